"""Run a rendered Pod with ``podman kube play --network host`` and do the kubelet's share of the work.

What podman 4.3 (Debian 12) leaves to us, each done here the way the kubelet does it:
- ``valueFrom.secretKeyRef`` / ``configMapKeyRef`` and ``envFrom`` are resolved to plain values
  (podman's own secretKeyRef reads podman secrets as JSON that its kube play does not write);
- ``$(VAR)`` references and the ``$$`` escape in command and args are expanded (podman passes
  them through, so KServe's ``ln -sf /proc/$$$$/root/models`` would reach the shell as ``$$$$``);
- probes are run from the host against the pod's ports (podman turns a liveness probe into a
  healthcheck that needs systemd timers and curl, neither of which is here), and removed from the
  played copy;
- ``podman kube down`` (4.3) stops the pod with no grace period: a SIGTERM handler in a test
  container never ran. So ``down`` does the kubelet's part first, ``podman pod stop -t
  terminationGracePeriodSeconds`` (SIGTERM, SIGKILL only after the grace period), reads the exit
  codes and logs, and then runs ``podman kube down`` to remove the pod;
- podman 4.3 turns an ``emptyDir`` into a named volume of the volume's name, which outlives the
  pod, is shared by every pod using that name, and takes the owner and mode of the image folder it
  is first mounted over (root, 0755: a modelcar running as uidModelcar then cannot link
  /mnt/models). The played copy uses what a kubelet's emptyDir is, a fresh host folder of mode
  0777 for this pod, removed by ``down``;
- container ``ports`` are dropped (podman maps them to host ports, refused with host networking;
  in Kubernetes they only document what the pod network exposes anyway);
- a ``configMap`` volume becomes such a host folder too, laid out as the kubelet's atomic writer
  lays it out (``..TIMESTAMP/KEY``, ``..data`` -> it, ``KEY`` -> ``..data/KEY``), and
  ``PlayedPod.update_config_map`` swaps ``..data`` the way the kubelet publishes a changed
  ConfigMap (podman copies a ConfigMap once, at play);
- podman applies the pod's ``restartPolicy: Always`` to init containers too and re-runs one that
  exited 0 (Kubernetes never does), then fails to remove it; the played copy uses ``OnFailure``.
"""

from __future__ import annotations

import base64
import copy
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


def podman_ready() -> str | None:
    """Why pod tests cannot run here, or None when they can."""
    if shutil.which("podman") is None:
        return "podman not installed (deploy/podman/setup.sh)"
    return None


def image_exists(image: str) -> bool:
    return subprocess.run(["podman", "image", "exists", image], check=False).returncode == 0


def _expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' expansion: $(VAR) when VAR is defined, $$ -> $, anything else left as it is."""

    def one(m: re.Match[str]) -> str:
        if m[0] == "$$":
            return "$"
        return env.get(m[1], m[0])

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)", one, text)


def _secret_value(secrets: dict[str, Obj], name: str, key: str) -> str:
    secret = secrets[name]
    if key in (secret.get("stringData") or {}):
        return str(secret["stringData"][key])
    return base64.b64decode(secret["data"][key]).decode()


def kubelet_view(pod: Obj, secrets: dict[str, Obj], config_maps: dict[str, Obj], empty_dirs: Path) -> Obj:
    """The Pod with what the kubelet resolves before it starts containers already resolved."""
    pod = copy.deepcopy(pod)
    spec = pod["spec"]
    if spec.get("restartPolicy", "Always") == "Always":
        spec["restartPolicy"] = "OnFailure"
    for volume in spec.get("volumes", []):
        if "emptyDir" in volume:
            folder = empty_dirs / f"{pod['metadata']['name']}-{volume['name']}"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            folder.chmod(0o777)
            del volume["emptyDir"]
            volume["hostPath"] = {"path": str(folder), "type": "Directory"}
        elif "configMap" in volume:
            ref = volume.pop("configMap")
            data = (config_maps.get(ref["name"]) or {}).get("data")
            if data is None and not ref.get("optional"):
                raise KeyError(f"volume {volume['name']} names ConfigMap {ref['name']}, which does not exist")
            folder = empty_dirs / f"{pod['metadata']['name']}-{volume['name']}"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            write_config_map(folder, data or {})
            volume["hostPath"] = {"path": str(folder), "type": "Directory"}
    for container in spec.get("initContainers", []) + spec["containers"]:
        env: dict[str, str] = {}
        for source in container.pop("envFrom", []):
            if "configMapRef" in source:
                ref = source["configMapRef"]
                data = (config_maps.get(ref["name"]) or {}).get("data")
            else:
                ref = source["secretRef"]
                secret = secrets.get(ref["name"])
                data = {k: _secret_value(secrets, ref["name"], k) for k in _keys(secret)} if secret else None
            if data is None and not ref.get("optional"):
                raise KeyError(f"envFrom names {ref['name']}, which does not exist")
            env.update({(source.get("prefix") or "") + k: str(v) for k, v in (data or {}).items()})
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = _expand(str(item["value"]), env)
            elif "secretKeyRef" in item.get("valueFrom", {}):
                ref = item["valueFrom"]["secretKeyRef"]
                env[item["name"]] = _secret_value(secrets, ref["name"], ref["key"])
            elif "configMapKeyRef" in item.get("valueFrom", {}):
                ref = item["valueFrom"]["configMapKeyRef"]
                env[item["name"]] = str(config_maps[ref["name"]]["data"][ref["key"]])
            else:
                raise ValueError(f"env {item['name']}: {item.get('valueFrom')} is not supported here")
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
        for key in ("command", "args"):
            if key in container:
                container[key] = [_expand(str(a), env) for a in container[key]]
        for probe in PROBES:
            container.pop(probe, None)
        # A containerPort only documents a port the pod's network already exposes; podman turns it
        # into a host port mapping, which it refuses with --network host.
        container.pop("ports", None)
    return pod


def write_config_map(folder: Path, data: dict[str, str]) -> None:
    """Publish ``data`` in ``folder`` as the kubelet's AtomicWriter does: the files in a new
    ``..TIMESTAMP`` folder, then ``..data`` renamed over to point at it, so a reader sees the old
    set or the new one, never a mix; each key is a link through ``..data``."""
    stamp = folder / time.strftime(f"..%Y_%m_%d_%H_%M_%S.{time.monotonic_ns()}")
    stamp.mkdir(mode=0o755)
    for key, value in data.items():
        (stamp / key).write_text(str(value))
        (stamp / key).chmod(0o644)
    old = (folder / "..data").resolve() if (folder / "..data").is_symlink() else None
    tmp = folder / "..data_tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(stamp.name)
    tmp.rename(folder / "..data")
    for key in data:
        if not (folder / key).is_symlink():
            (folder / key).symlink_to(f"..data/{key}")
    for link in folder.iterdir():  # keys the new data no longer has
        if link.is_symlink() and not link.name.startswith("..") and link.name not in data:
            link.unlink()
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _keys(secret: Obj) -> list[str]:
    return list((secret.get("data") or {}).keys()) + list((secret.get("stringData") or {}).keys())


def _probe_once(probe: Obj, host: str = "127.0.0.1") -> bool:
    timeout = float(probe.get("timeoutSeconds", 1))
    if "httpGet" in probe:
        get = probe["httpGet"]
        url = f"http://{host}:{get['port']}{get.get('path', '/')}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return 200 <= resp.status < 400
        except urllib.error.HTTPError as exc:
            return 200 <= exc.code < 400
        except OSError:
            return False
    if "tcpSocket" in probe:
        try:
            with socket.create_connection((host, int(probe["tcpSocket"]["port"])), timeout=timeout):
                return True
        except OSError:
            return False
    raise ValueError(f"probe kind not supported here: {sorted(probe)}")


@dataclass
class PlayedPod:
    """A pod started by ``podman kube play``; ``name`` is metadata.name."""

    pod: Obj  # as rendered (with probes)
    played: Obj  # as given to podman
    path: Path
    name: str
    started: float = field(default_factory=time.monotonic)
    ready_after: float | None = None
    followers: list[tuple[subprocess.Popen[bytes], Path]] = field(default_factory=list)
    exit_codes: dict[str, str] = field(default_factory=dict)  # "exited 0" per container, after down()
    final_logs: dict[str, str] = field(default_factory=dict)

    def container(self, name: str) -> str:
        return f"{self.name}-{name}"

    def logs(self, name: str) -> str:
        proc = subprocess.run(
            ["podman", "logs", self.container(name)], capture_output=True, text=True, check=False
        )
        return proc.stdout + proc.stderr

    def state(self, name: str) -> str:
        proc = subprocess.run(
            ["podman", "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", self.container(name)],
            capture_output=True,
            text=True,
            check=False,
        )
        return proc.stdout.strip() or proc.stderr.strip()

    def exec(self, name: str, *cmd: str) -> str:
        return subprocess.run(
            ["podman", "exec", self.container(name), *cmd], capture_output=True, text=True, check=True
        ).stdout

    def update_config_map(self, name: str, data: dict[str, str]) -> None:
        """What the kubelet does when ConfigMap ``name`` changes: republish every volume of it."""
        sources = {
            v["name"]
            for v in self.pod["spec"].get("volumes", [])
            if v.get("configMap", {}).get("name") == name
        }
        assert sources, f"no volume of this pod mounts ConfigMap {name}"
        for volume in self.played["spec"]["volumes"]:
            if volume["name"] in sources:
                write_config_map(Path(volume["hostPath"]["path"]), data)

    def probe(self, container: str, kind: str) -> bool:
        (spec,) = [c for c in self.pod["spec"]["containers"] if c["name"] == container]
        return _probe_once(spec[kind])

    def wait_ready(self, container: str = "kserve-container", timeout: float = 300.0) -> float:
        """Run the startup, then readiness probe as the kubelet would; seconds from play to ready."""
        (spec,) = [c for c in self.pod["spec"]["containers"] if c["name"] == container]
        deadline = time.monotonic() + timeout
        for kind in ("startupProbe", "readinessProbe"):
            probe = spec.get(kind)
            if probe is None:
                continue
            while not _probe_once(probe):
                state = self.state(container)
                if state.startswith("exited") or time.monotonic() > deadline:
                    others = "".join(
                        f"\n--- {c['name']} ({self.state(c['name'])}):\n{self.logs(c['name'])[-1500:]}"
                        for c in self.played["spec"]["containers"]
                        if c["name"] != container
                    )
                    raise AssertionError(
                        f"{container} not ready ({kind}; state {state}) after "
                        f"{time.monotonic() - self.started:.0f} s:\n{self.logs(container)[-6000:]}{others}"
                    )
                time.sleep(min(1.0, float(probe.get("periodSeconds", 10))))
        self.ready_after = time.monotonic() - self.started
        return self.ready_after

    def follow(self, container: str, folder: Path) -> Path:
        """Stream a container's log to a file until it ends (survives ``kube down`` removing it)."""
        out = folder / f"{self.container(container)}.log"
        fh = out.open("wb")
        proc = subprocess.Popen(
            ["podman", "logs", "-f", self.container(container)], stdout=fh, stderr=subprocess.STDOUT
        )
        fh.close()
        self.followers.append((proc, out))
        return out

    def down(self, timeout: float = 120.0) -> float:
        """SIGTERM to every container, SIGKILL after the grace period, then ``podman kube down``.

        Returns the seconds the stop took; ``exit_codes`` and ``final_logs`` keep what the
        containers left, since ``kube down`` removes them.
        """
        grace = int(self.pod["spec"].get("terminationGracePeriodSeconds", 30))
        start = time.monotonic()
        subprocess.run(
            ["podman", "pod", "stop", "-t", str(grace), self.name],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        took = time.monotonic() - start
        for c in self.played["spec"]["containers"]:
            state = self.state(c["name"])
            if state and not state.startswith("Error"):
                self.exit_codes[c["name"]] = state
                self.final_logs[c["name"]] = self.logs(c["name"])
        subprocess.run(
            ["podman", "kube", "down", str(self.path)], capture_output=True, timeout=timeout, check=False
        )
        remove_empty_dirs(self.played)
        for proc, _ in self.followers:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.followers.clear()
        return took


def remove_empty_dirs(played: Obj) -> None:
    for volume in played["spec"].get("volumes", []):
        path = volume.get("hostPath", {}).get("path", "")
        if path.endswith(f"-{volume['name']}"):
            shutil.rmtree(path, ignore_errors=True)


def play(
    pod: Obj,
    folder: Path,
    secrets: dict[str, Obj] | None = None,
    config_maps: dict[str, Obj] | None = None,
    timeout: float = 600.0,
) -> PlayedPod:
    """Start the pod (init containers first, as kube play does); raises with the logs when that fails."""
    played = kubelet_view(pod, secrets or {}, config_maps or {}, folder / "emptydirs")
    path = folder / f"{pod['metadata']['name']}.yaml"
    path.write_text(yaml.safe_dump(played, sort_keys=False))
    subprocess.run(["podman", "kube", "down", str(path)], capture_output=True, check=False)
    started = time.monotonic()
    proc = subprocess.run(
        ["podman", "kube", "play", "--network", "host", str(path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    running = PlayedPod(pod, played, path, pod["metadata"]["name"], started)
    if proc.returncode != 0:
        logs = "\n".join(
            f"--- {c['name']}:\n{running.logs(c['name'])[-4000:]}"
            for c in played["spec"].get("initContainers", []) + played["spec"]["containers"]
        )
        running.down()
        raise AssertionError(f"podman kube play failed: {proc.stderr.strip()}\n{logs}")
    return running
