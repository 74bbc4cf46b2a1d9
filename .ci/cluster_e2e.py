"""End to end on a real two-node Ray cluster, as the README's recipe runs it: ``ray start
--head``, a second node with ``ray start --address``, ``ray job submit`` (the working dir
without the package's sources) of ``metarl sweep ...`` (2 settings x 2 seeds of a tiny RL²
bandit run), then check the four run dirs and the report, and stop the cluster. Every process
the script started is stopped (found by the cluster's private temp dir and GCS port, and their
descendants, so another Ray instance on the machine is left alone) and checked gone; exit 0
only when all of it held.

    python .ci/cluster_e2e.py [--keep DIR]     # from the repository root
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETTINGS = ["tasks_per_iteration=4", "episodes_per_trial=2", "eval_tasks=4", "hidden_size=8",
            "ppo_epochs=1", "minibatches=1"]
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sh(*cmd: str, timeout: float = 600) -> str:
    print("+", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stdout[-4000:]}"
                         f"\n{done.stderr[-4000:]}")
    return done.stdout


def processes() -> dict[int, tuple[int, str]]:
    """pid → (parent pid, command line) of every live process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, UnicodeDecodeError):
                continue
            if stat[0] != "Z":
                table[int(entry.name)] = (int(stat[1]), args)
    return table


def cluster_processes(markers: tuple[str, ...]) -> set[int]:
    """The processes whose command line holds one of ``markers`` (the cluster's temp dir:
    GCS, raylets, dashboard, monitors; its GCS port: the Ray client server) and all their
    descendants (workers, agents, the job)."""
    table = processes()
    mine, pid = set(), os.getpid()  # this script and its ancestors are not the cluster's
    while pid in table and pid not in mine:
        mine.add(pid)
        pid = table[pid][0]
    found = {pid for pid, (_, args) in table.items()
             if any(marker in args for marker in markers)} - mine
    grew = True
    while grew:
        more = {pid for pid, (ppid, _) in table.items() if ppid in found} - found - mine
        found |= more
        grew = bool(more)
    return found


def stop_cluster(markers: tuple[str, ...]) -> None:
    """SIGTERM the cluster's processes, SIGKILL what is left after 10 s; fail if any
    survive."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        pids = cluster_processes(markers)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + wait
        while cluster_processes(markers) and time.time() < deadline:
            time.sleep(0.2)
    left = cluster_processes(markers)
    if left:
        raise SystemExit(f"processes of the cluster survived: {sorted(left)}")
    print("cluster stopped: no process left", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="leave the sweep in DIR (default: a temp dir, removed)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="metarl-e2e-"))
    temp_dir = root / "ray"  # the marker of every process of this cluster
    storage = Path(args.keep).resolve() if args.keep else root / "storage"
    gcs, dashboard = free_port(), free_port()
    try:
        sh("ray", "start", "--head", f"--port={gcs}", f"--dashboard-port={dashboard}",
           "--num-cpus=1", f"--temp-dir={temp_dir}", "--include-dashboard=true",
           "--disable-usage-stats")
        sh("ray", "start", f"--address=127.0.0.1:{gcs}", "--num-cpus=1",
           f"--temp-dir={temp_dir}")
        nodes = sh(sys.executable, "-c", "import ray; ray.init(address='auto', "
                   "log_to_driver=False); print(sum(n['Alive'] for n in ray.nodes()))")
        assert nodes.strip().splitlines()[-1] == "2", nodes
        address = f"http://127.0.0.1:{dashboard}"
        # the README's runtime env: the package from the install, the working dir for configs
        runtime_env = json.dumps({"working_dir": ".", "excludes": [
            ".git", ".ci-mw", "/metarl", "/envs", "/agents"]})
        out = sh("ray", "job", "submit", f"--address={address}",
                 f"--runtime-env-json={runtime_env}", "--",
                 "metarl", "sweep", "rl2", "bandit", "--iterations", "3", "--seeds", "0", "1",
                 "--grid", "lr=1e-3,3e-3", "--storage", str(storage), "--name", "e2e",
                 "--set", *SETTINGS)
        print(out[-2000:], flush=True)
        jobs = sh("ray", "job", "list", f"--address={address}")
        assert "SUCCEEDED" in jobs, jobs
        runs = storage / "e2e" / "runs"
        names = sorted(p.name for p in runs.iterdir())
        assert names == ["lr=0.001_seed0", "lr=0.001_seed1", "lr=0.003_seed0",
                         "lr=0.003_seed1"], names
        for name in names:
            run = runs / name
            assert (run / "checkpoints" / "iter_000003.pt").is_file(), run
            assert json.loads((run / "eval.json").read_text())["num_tasks"] == 4, run
            assert len((run / "progress.csv").read_text().splitlines()) == 4, run
        sh(sys.executable, "-m", "metarl.cli", "report", str(storage / "e2e"), "--out",
           str(root / "report.md"))
        report = (root / "report.md").read_text()
        assert "lr=0.001" in report and "lr=0.003" in report, report
        print(report, flush=True)
    finally:
        stop_cluster((str(temp_dir), f":{gcs} "))
        shutil.rmtree(root, ignore_errors=True)
    print("cluster end-to-end: OK", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
