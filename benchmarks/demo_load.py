"""The demo Spaces under load: good and bad uploads from concurrent ``gradio_client`` clients.

Each demo (classification, segmentation 2D, segmentation 3D, detection, CLIP, diffusion) is built with
``neurotrain_hf.demos.build_demo`` from a tiny run trained here for a few steps (the configs of
``tests/helpers/tiny_runs.py``, a small 3D U-Net on ``synthetic_3d`` and a class-conditioned 16 px DDPM
on ``color_shapes``; in a temporary folder, or ``--runs DIR`` to keep and reuse them) and served on
127.0.0.1 in a child process (``--serve``), as a Space runs ``app.py``. ``--clients`` threads, each with
its own ``Client``, take ``--requests`` requests from a shared list in two halves; every
``--bad-every``-th request is a bad upload cycling through the demo's kinds (corrupt, wrong type,
oversized: over the demo's byte limit, over the server's upload cap (a plain HTTP upload: gradio_client
refuses to send such a file), or a NIfTI header declaring too many voxels; for diffusion: an unknown
class, too many images, a mask for a class model), the rest cycle through good inputs.

A good request is "answered" when its answer equals the reference computed here: the ``Predictor``'s
(classification label and top score, the segmentation mask through the PNG, the 3D label volume, the
detections rounded as the table rounds them, the generated images through the PNG) or, for CLIP, the
ranking by cosine similarity of ``CLIPModel`` embeddings. A bad request is "rejected" when it raises one
line of message (a ``gr.Error``, or the HTTP 413 of the upload cap) without a traceback or a server path.
Anything else is "failed".
Latency: submit to result, per request (both kinds; it includes the wait in the demo's queue, which
runs one prediction at a time). RSS: the server child's resident set after start
up, and its peak (``VmHWM``, reset through ``/proc/PID/clear_refs`` when a half starts) over each half;
"growth" is the second half's peak over the first's. Every request has a ``--timeout``, every half of
a demo's requests a ``--deadline``.

Targets: every good request answered, every bad one rejected, no traceback in the server's log (its
stderr), growth < 10%.

    .venv/bin/python benchmarks/demo_load.py            # 64 requests from 8 clients per demo
    .venv/bin/python benchmarks/demo_load.py --quick    # 16 requests from 4 clients
"""

from __future__ import annotations

import argparse
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
# eval_memory sets the offline variables when imported (before anything reads them)
from eval_memory import MB, OFFLINE  # noqa: E402

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
DEMOS = ("classification", "segmentation", "segmentation3d", "detection", "clip", "diffusion")
GROWTH_TARGET = 0.10
CLIP_TEXT = "a small red circle at the top left"


# --- runs and inputs ------------------------------------------------------------------------------------
def volume_config(root: Path) -> dict:
    """A tiny 3D run: a depth-2 U-Net on two synthetic_3d cases, 2 steps."""
    return {
        "basic": {"task": "segmentation", "run_id": "vol", "seed": 0, "output_dir": str(root / "runs")},
        "model": {"name": "unet", "kwargs": {"spatial_dims": 3, "depth": 2, "base_channels": 4}},
        "dataset": {"name": "synthetic_3d", "max_samples": 2, "spacing": [1.5, 1.5, 2.5]},
        "augmentation": {"patch_size": [16, 16, 8], "samples_per_volume": 1},
        "training": {"max_steps": 2, "batch_size": 2},
    }


def diffusion_config(root: Path) -> dict:
    """A tiny class-conditioned DDPM: 16 px coloured shapes, a two-level UNet, 2 steps, 4 sampling steps."""
    return {
        "basic": {"task": "diffusion", "run_id": "diff", "seed": 0, "output_dir": str(root / "runs")},
        "model": {"name": "unet2d", "kwargs": {"block_out_channels": [8, 16], "attention_levels": [1]}},
        "dataset": {"name": "color_shapes", "image_size": 16, "num_samples": 16},
        "training": {"conditioning": "class", "max_steps": 2, "batch_size": 8, "sampling_steps": 4},
    }


def train_runs(root: Path, demos: list[str]) -> dict[str, Path]:
    """The run folder of every demo, trained under ``root`` unless already there."""
    from tests.helpers.tiny_runs import config, train

    runs = {}
    for demo in demos:
        task = "segmentation" if demo == "segmentation3d" else demo
        special = {"segmentation3d": volume_config, "diffusion": diffusion_config}
        data = special[demo](root / demo) if demo in special else config(task, root / demo)
        basic = data["basic"]
        folder = Path(basic["output_dir"]) / basic["task"] / basic["run_id"]
        runs[demo] = folder if (folder / "model" / "config.json").is_file() else train(data)
    return runs


def make_inputs(root: Path, demos: list[str]) -> dict[str, dict[str, list]]:
    """Per demo: ``good`` and ``bad`` argument tuples for ``/predict`` (file paths, wrapped later)."""
    import gzip

    import nibabel as nib
    import numpy as np

    from neurotrain_hf.demos.common import MAX_BYTES, UPLOAD_CAP
    from neurotrain_hf.tasks.detection.synthetic import _image
    from neurotrain_hf.tasks.segmentation.synthetic_volumes import case_affine, make_case
    from tests.helpers.tiny_runs import sample_images

    folder = root / "inputs"
    folder.mkdir(parents=True, exist_ok=True)
    files = sample_images(folder)
    text = folder / "notes.txt"
    text.write_text("a text file, not an image\n")
    big = folder / "big.png"  # over the demo's limit: refused by the demo with its own message
    big.write_bytes(files["retina"].read_bytes())
    capped = folder / "capped.png"  # over the server's upload cap: refused by gradio (HTTP 413)
    capped.touch()
    for path, size in ((big, MAX_BYTES + 2**20), (capped, UPLOAD_CAP * MAX_BYTES + 2**20)):
        with open(path, "r+b") as f:  # sparse: zeros that take no disk here
            f.truncate(size)
    shapes = []
    for i in range(3):
        shapes.append(folder / f"detect{i}.png")
        shapes[-1].write_bytes(_image("test", i)["image"]["bytes"])
    cases = []
    rng = np.random.default_rng(7)
    for i in range(2):  # one RAS, one LPS file
        image, _ = make_case(rng)
        cases.append(folder / f"case{i}.nii.gz")
        nib.save(nib.Nifti1Image(image, case_affine(i, image.shape)), str(cases[-1]))
    truncated = folder / "truncated.nii.gz"
    truncated.write_bytes(cases[0].read_bytes()[:2000])
    text_nifti = folder / "notes.nii.gz"
    text_nifti.write_text("a text file, not a volume\n")
    header = nib.Nifti1Header()  # declares 2048^3 voxels in a few hundred bytes
    header.set_data_dtype(np.uint8)
    header.set_data_shape((2048, 2048, 2048))
    bomb = folder / "bomb.nii.gz"
    bomb.write_bytes(gzip.compress(header.binaryblock + bytes(4 + 1000)))
    image_bad = [files["corrupt"], text, big]  # corrupt, wrong type, oversized (+ over the cap: a raw upload)
    inputs = {
        "classification": {
            "good": [(files[k],) for k in ("digit", "digit16", "retina")],
            "bad": [(p,) for p in image_bad] + [capped],
        },
        "segmentation": {
            "good": [(files[k],) for k in ("retina", "retina_odd", "digit16")],
            "bad": [(p,) for p in image_bad] + [capped],
        },
        "segmentation3d": {
            "good": [(c, -1) for c in cases],
            "bad": [(p, -1) for p in (truncated, text_nifti, files["retina"], bomb)],
        },
        "detection": {"good": [(p, 0.0) for p in shapes], "bad": [(p, 0.0) for p in image_bad] + [capped]},
        "clip": {
            "good": [([files[f"shape{i}"] for i in range(k, k + 3)], CLIP_TEXT, "") for k in range(3)],
            "bad": [([files["shape0"], p], CLIP_TEXT, "") for p in image_bad] + [capped],
        },
        "diffusion": {  # (class, mask, number of images, seed)
            "good": [("red circle", None, 2, 0), ("blue triangle", None, 2, 5), ("1", None, 1, 9)],
            "bad": [("purple hexagon", None, 1, 0), ("red circle", None, 17, 0), ("red circle", big, 1, 0)]
            + [capped],
        },
    }
    return {d: inputs[d] for d in demos}


# --- references and checks ------------------------------------------------------------------------------
class Reference:
    """The expected answer of each good input of one demo, computed without the demo."""

    def __init__(self, demo: str, run: Path, goods: list[tuple]) -> None:
        self.demo = demo
        if demo == "clip":
            self.expected = [self._clip(run, args) for args in goods]
            return
        from neurotrain_hf.predictor import Predictor

        predictor = Predictor.from_pretrained(run)
        if demo == "diffusion":
            self.expected = [self._diffusion(predictor, args) for args in goods]
            return
        if demo == "segmentation3d":
            self.expected = [predictor.predict_files([str(a[0])])[0]["mask"] for a in goods]
        else:
            self.expected = [predictor(str(a[0])) for a in goods]
        self.binary = demo == "segmentation" and predictor.model.config.num_labels <= 2

    @staticmethod
    def _clip(run: Path, args: tuple) -> list[tuple[str, float]]:
        import numpy as np
        import torch
        from PIL import Image
        from transformers import CLIPModel, CLIPProcessor

        folder = run / "model"
        model, processor = CLIPModel.from_pretrained(folder).eval(), CLIPProcessor.from_pretrained(folder)
        paths, text, _ = args
        with torch.no_grad():
            pixels = processor(
                images=[np.asarray(Image.open(p).convert("RGB")) for p in paths], return_tensors="pt"
            )
            image = model.get_image_features(**pixels)
            image = getattr(image, "pooler_output", image)
            tokens = processor(text=[text], padding="max_length", max_length=32, return_tensors="pt")
            words = model.get_text_features(**tokens)
            words = getattr(words, "pooler_output", words)
        cosine = torch.nn.functional.cosine_similarity(image, words, dim=-1).tolist()
        return sorted(((Path(p).name, c) for p, c in zip(paths, cosine)), key=lambda t: -t[1])

    @staticmethod
    def _diffusion(predictor: Any, args: tuple) -> Any:
        """The Predictor's images (uint8) for (class, mask, count, seed) at the saved settings."""
        import numpy as np

        names = list(predictor.model.config.class_names)
        name, _, count, seed = args
        label = names.index(name) if name in names else int(name)
        records = predictor.predict([{"noise_seed": seed + i, "class": label} for i in range(count)])
        return np.stack([np.round(np.clip(r["image"], 0, 1) * 255).astype(np.uint8) for r in records])

    def check(self, index: int, result: Any) -> str:
        """'' when ``result`` is the expected answer of good input ``index``, else what differs."""
        import numpy as np
        from PIL import Image

        want = self.expected[index]
        if self.demo == "classification":
            ok = result["label"] == want["label_name"]
            ok &= abs(result["confidences"][0]["confidence"] - float(want["score"])) <= 1e-6
            return "" if ok else f"label {result['label']} vs {want['label_name']}"
        if self.demo == "segmentation":
            mask = np.asarray(Image.open(result[0]))
            expected = want["mask"].astype(np.uint8) * (255 if self.binary else 1)
            return "" if np.array_equal(mask, expected) else "mask differs"
        if self.demo == "segmentation3d":
            import nibabel as nib

            return "" if np.array_equal(np.asarray(nib.load(result[0]).dataobj), want) else "volume differs"
        if self.demo == "detection":
            rows = [
                [name, round(float(s), 4), *(round(float(v), 1) for v in box)]
                for name, s, box in zip(want["label_names"], want["scores"], want["boxes"])
            ]
            got = result[1]["data"]
            same = len(got) == len(rows) and all(
                g[0] == r[0] and np.allclose(g[1:], r[1:], atol=1e-3) for g, r in zip(got, rows)
            )
            return "" if same else f"{len(got)} detections vs {len(rows)}"
        if self.demo == "diffusion":
            images = np.stack([np.asarray(Image.open(item["image"])) for item in result])
            return "" if np.array_equal(images, want) else "generated images differ"
        got = [(row[1], row[2]) for row in result[0]["data"]]  # clip
        same = [g[0] for g in got] == [w[0] for w in want] and all(
            abs(g[1] - w[1]) <= 1e-5 for g, w in zip(got, want)
        )
        return "" if same else f"ranking {got} vs {want}"


def message_of(exc: BaseException) -> str:
    """What the server said: a ``gr.Error``'s message, or the body of an HTTP error (the upload cap)."""
    response = getattr(exc, "response", None)
    if response is not None:
        return f"HTTP {response.status_code}: {response.text.strip()}"
    return str(getattr(exc, "message", None) or exc).strip()


def is_one_line_refusal(message: str) -> bool:
    return bool(message) and "\n" not in message and "Traceback" not in message and "/gradio/" not in message


# --- the server and the clients -------------------------------------------------------------------------
def serve(run: str, port: int) -> None:
    """Child: the demo of ``run`` on 127.0.0.1:``port`` until killed (as a Space's ``app.py``)."""
    from neurotrain_hf.demos import build_demo

    demo = build_demo(run)
    demo.launch(server_name="127.0.0.1", server_port=port, quiet=True, prevent_thread_lock=True)
    print("ready", flush=True)
    threading.Event().wait()


def memory(pid: int, reset: bool = True) -> tuple[int, int]:
    """(RSS, peak RSS) of process ``pid`` in bytes, from /proc (``VmRSS``, ``VmHWM``); ``reset``: then
    restart the peak from the current RSS (``clear_refs``), so the next reading covers what follows."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    if reset:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    return fields["VmRSS"], fields["VmHWM"]


def start_server(run: Path, log: Any, opts) -> tuple[subprocess.Popen, str]:
    """The demo server child (its stderr into ``log``) once it says it is ready, and its URL."""
    from tests.conftest import free_port

    port = free_port()
    env = {**os.environ, **OFFLINE, "PYTHONPATH": str(ROOT), "GRADIO_ANALYTICS_ENABLED": "False"}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--serve", str(run), "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=ROOT)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        line = lines.get(timeout=opts.start_timeout)
    except queue.Empty:
        line = ""
    if line.strip() != "ready":
        proc.kill()
        log.seek(0)
        raise RuntimeError(f"{run}: the demo server did not start:\n{log.read()[-3000:]}")
    return proc, f"http://127.0.0.1:{port}/"


def arguments(args: tuple) -> list:
    from gradio_client import handle_file

    def wrap(value: Any) -> Any:
        if isinstance(value, Path):
            return handle_file(str(value))
        if isinstance(value, list):
            return [wrap(v) for v in value]
        return value

    return [wrap(a) for a in args]


def upload(url: str, path: Path, timeout: float) -> Exception | None:
    """POST ``path`` to the upload route as a browser or curl would: the error the server answers, if any."""
    import httpx

    with open(path, "rb") as f:
        response = httpx.post(f"{url}gradio_api/upload", files={"files": (path.name, f)}, timeout=timeout)
    try:
        response.raise_for_status()
    except httpx.HTTPStatusError as exc:
        return exc
    return None


def send(url: str, jobs: list[tuple[str, int, tuple]], reference: Reference, opts) -> list[dict]:
    """``jobs`` (kind, input index, args) from ``opts.clients`` threads; one record per job."""
    from gradio_client import Client

    todo: queue.Queue = queue.Queue()
    for job in jobs:
        todo.put(job)
    records: list[dict] = []
    lock, stop = threading.Lock(), threading.Event()

    def client_loop() -> None:
        client = Client(url, verbose=False)
        while not stop.is_set():
            try:
                kind, index, args = todo.get_nowait()
            except queue.Empty:
                return
            start = time.perf_counter()
            try:
                if isinstance(args, Path):  # a plain HTTP upload (gradio_client refuses files over the cap)
                    result, error = None, upload(url, args, opts.timeout)
                else:
                    result = client.submit(*arguments(args), api_name="/predict").result(timeout=opts.timeout)
                    error = None
            except Exception as exc:  # noqa: BLE001 - every outcome is recorded
                result, error = None, exc
            seconds = time.perf_counter() - start
            if kind == "good":
                problem = reference.check(index, result) if error is None else message_of(error)
                outcome = "answered" if not problem else "failed"
            else:
                problem = "answered a bad upload" if error is None else message_of(error)
                outcome = "rejected" if error is not None and is_one_line_refusal(problem) else "failed"
            with lock:
                if not stop.is_set():
                    records.append({"kind": kind, "outcome": outcome, "seconds": seconds, "problem": problem})

    threads = [threading.Thread(target=client_loop, daemon=True) for _ in range(opts.clients)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + opts.deadline
    for t in threads:
        t.join(max(deadline - time.monotonic(), 0.0))
    with lock:
        stop.set()  # a client still waiting on the server records nothing more
        records = list(records)
    lost = len(jobs) - len(records)
    records += [{"kind": "lost", "outcome": "failed", "seconds": opts.timeout, "problem": "deadline"}] * lost
    return records


def job_list(inputs: dict[str, list], n: int, bad_every: int) -> list[tuple[str, int, tuple]]:
    jobs, good, bad = [], 0, 0
    for i in range(n):
        if bad_every and i % bad_every == bad_every - 1:
            jobs.append(("bad", bad % len(inputs["bad"]), inputs["bad"][bad % len(inputs["bad"])]))
            bad += 1
        else:
            jobs.append(("good", good % len(inputs["good"]), inputs["good"][good % len(inputs["good"])]))
            good += 1
    return jobs


def measure(demo: str, run: Path, inputs: dict[str, list], opts) -> dict:
    reference = Reference(demo, run, inputs["good"])
    jobs = job_list(inputs, opts.requests, opts.bad_every)
    half = len(jobs) // 2
    with tempfile.TemporaryFile("w+") as log:
        proc, url = start_server(run, log, opts)
        try:
            start_rss, _ = memory(proc.pid)
            records = send(url, jobs[:half], reference, opts)
            _, peak_first = memory(proc.pid)
            records += send(url, jobs[half:], reference, opts)
            _, peak_last = memory(proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.seek(0)
        tracebacks = log.read().count("Traceback")
    seconds = sorted(r["seconds"] for r in records)
    count = {k: sum(r["outcome"] == k for r in records) for k in ("answered", "rejected", "failed")}
    return {
        "demo": demo,
        "good": sum(j[0] == "good" for j in jobs),
        "bad": sum(j[0] == "bad" for j in jobs),
        **count,
        "p50": statistics.median(seconds),
        "p95": seconds[min(len(seconds) - 1, round(0.95 * (len(seconds) - 1)))],
        "start_mb": start_rss / MB,
        "peak_first_mb": peak_first / MB,
        "peak_last_mb": peak_last / MB,
        "growth": (peak_last - peak_first) / peak_first,  # peaks over each half
        "tracebacks": tracebacks,  # in the server's log
        "problems": sorted({r["problem"] for r in records if r["outcome"] == "failed"})[:5],
        "messages": sorted({r["problem"] for r in records if r["outcome"] == "rejected"}),
    }


# --- the parent -----------------------------------------------------------------------------------------
def parse(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demos", nargs="+", choices=DEMOS, default=list(DEMOS))
    parser.add_argument("--requests", type=int, default=64, help="requests per demo (two halves)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent gradio_client clients")
    parser.add_argument("--bad-every", type=int, default=4, help="every n-th request is a bad upload")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    parser.add_argument("--deadline", type=float, default=600.0, help="seconds per half of a demo's requests")
    parser.add_argument("--start-timeout", type=float, default=180.0, help="seconds for a server to start")
    parser.add_argument("--runs", type=Path, help="keep the tiny runs and inputs here (reused when present)")
    parser.add_argument("--verbose", action="store_true", help="print the refusal messages")
    parser.add_argument("--quick", action="store_true", help="smoke run: 16 requests from 4 clients")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    if parser.parse_known_args(argv)[0].quick:  # smaller defaults; options given explicitly still win
        parser.set_defaults(requests=16, clients=4)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    if opts.serve:
        serve(opts.serve, opts.port)
        return 0
    with tempfile.TemporaryDirectory(prefix="demo-load-") as tmp:
        root = opts.runs or Path(tmp)
        os.environ.setdefault("NEUROTRAIN_CACHE", str(root / "cache"))  # synthetic volumes
        t0 = time.perf_counter()
        runs = train_runs(root, opts.demos)
        inputs = make_inputs(root, opts.demos)
        print(f"tiny runs and inputs ready in {time.perf_counter() - t0:.0f} s", flush=True)
        results = []
        for demo in opts.demos:
            res = measure(demo, runs[demo], inputs[demo], opts)
            results.append(res)
            print(
                f"{demo}: {res['answered']}/{res['good']} answered, {res['rejected']}/{res['bad']} rejected, "
                f"{res['failed']} failed",
                flush=True,
            )
            for problem in res["problems"]:
                print(f"  failed: {problem}")
            if opts.verbose:
                for message in res["messages"]:
                    print(f"  refused: {message}")
    report(results, opts)
    return 0 if all(ok(r) for r in results) else 1


def ok(res: dict) -> bool:
    return (
        res["answered"] == res["good"]
        and res["rejected"] == res["bad"]
        and res["failed"] == 0
        and res["tracebacks"] == 0
        and res["growth"] < GROWTH_TARGET
    )


def report(results: list[dict], opts) -> None:
    print(
        f"\n{opts.requests} requests per demo from {opts.clients} clients, every {opts.bad_every}th a bad upload; "
        f"server in a child process, RSS from /proc; peak1/peak2 = VmHWM over the first {opts.requests // 2} "
        f"/ last {opts.requests - opts.requests // 2} requests (reset in between), growth = peak2 / peak1 - 1"
    )
    header = (
        f"{'demo':15s} {'answered':>9s} {'rejected':>9s} {'failed':>7s} {'p50 ms':>8s} {'p95 ms':>8s} "
        f"{'start MB':>9s} {'peak1 MB':>9s} {'peak2 MB':>9s} {'growth':>7s} {'tracebacks':>10s}"
    )
    print(header)
    for r in results:
        print(
            f"{r['demo']:15s} {r['answered']:>4d}/{r['good']:<4d} {r['rejected']:>4d}/{r['bad']:<4d} "
            f"{r['failed']:>7d} {1000 * r['p50']:8.0f} {1000 * r['p95']:8.0f} {r['start_mb']:9.1f} "
            f"{r['peak_first_mb']:9.1f} {r['peak_last_mb']:9.1f} {100 * r['growth']:6.1f}% {r['tracebacks']:10d}"
        )
    good = sum(r["answered"] for r in results), sum(r["good"] for r in results)
    bad = sum(r["rejected"] for r in results), sum(r["bad"] for r in results)
    growth = max(r["growth"] for r in results)
    verdict = "OK" if all(ok(r) for r in results) else "FAIL"
    print(
        f"demo_load: {len(results)} demos, {good[0]}/{good[1]} good answered correctly, {bad[0]}/{bad[1]} bad "
        f"rejected with one line, {sum(r['failed'] for r in results)} failed, "
        f"{sum(r['tracebacks'] for r in results)} tracebacks in server logs, max RSS growth "
        f"{100 * growth:.1f}% (target < {100 * GROWTH_TARGET:.0f}%): {verdict}"
    )


if __name__ == "__main__":
    sys.exit(main())
