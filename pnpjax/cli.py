"""Command line: `pnpjax train|eval|predict|export|cache` (also `python -m pnpjax`).

Every user error (bad file, bad option, bad checkpoint) ends as one line on stderr and exit
status 2, with nothing written; see errors.py.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import io
import json
import os
import re
import stat
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path

from pnpjax import fsio, readers, validate
from pnpjax.textsafe import one_line
from pnpjax.errors import ConfigError, InputError, PnpjaxError
from pnpjax.readers import read_landmarks  # noqa: F401  (moved to readers.py; kept importable here)

EXIT_USAGE = 2

# The CLI keeps its compiled programs between runs (JAX's persistent compilation cache): a second
# `pnpjax predict --refine` skips the seconds of compiling its jitted path. Off with
# PNPJAX_CACHE_DIR= (empty); JAX_COMPILATION_CACHE_DIR, when set, is JAX's own choice and wins.
CACHE_ENV = "PNPJAX_CACHE_DIR"
CACHE_MAX_BYTES = 256 * 2**20  # least recently used entries are deleted beyond this (needs filelock)
CACHE_MIN_COMPILE_SECONDS = 0.1  # programs quicker to compile than this are not worth a file


def compile_cache_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """Where the CLI caches compiled programs: $PNPJAX_CACHE_DIR, else $XDG_CACHE_HOME/pnpjax/jax
    (an absolute XDG_CACHE_HOME only), else ~/.cache/pnpjax/jax. None (no caching by pnpjax) when
    PNPJAX_CACHE_DIR is set but empty, when JAX_COMPILATION_CACHE_DIR is set, even empty (JAX's
    own choice), or when there is no home directory."""
    return _cache_location(os.environ if environ is None else environ)[0]


def _cache_location(env: Mapping[str, str]) -> tuple[Path | None, str]:
    """(compile_cache_dir, "") or (None, why there is none)."""
    if "JAX_COMPILATION_CACHE_DIR" in env:
        return (
            None,
            f"JAX_COMPILATION_CACHE_DIR is set: JAX's own cache, {one_line(env['JAX_COMPILATION_CACHE_DIR'])!r}",
        )
    if env.get(CACHE_ENV) == "":
        return None, f"{CACHE_ENV} is empty: caching is off"
    try:
        if CACHE_ENV in env:
            return Path(env[CACHE_ENV]).expanduser(), ""
        xdg = env.get("XDG_CACHE_HOME", "")
        if os.path.isabs(xdg):
            return Path(xdg) / "pnpjax" / "jax", ""
        return Path.home() / ".cache" / "pnpjax" / "jax", ""
    except (RuntimeError, KeyError):  # ~ or ~user that cannot be expanded
        return None, "no home directory to keep it in"


def _unsafe_cache_dir(d: Path) -> str | None:
    """Why d may not hold compiled programs (machine code this process will run), or None. It is
    created (mode 0700) if missing, must be a directory this user owns and can write that no one
    else can, and every directory above it must be this user's or root's and not writable by
    others (unless sticky, like /tmp), so that no one else can swap it for theirs."""
    try:
        try:
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        except FileExistsError:  # (exist_ok: something else than a directory is there)
            return "not a directory"
        real = d.resolve(strict=True)
        st = real.stat()
        uid = os.getuid() if hasattr(os, "getuid") else None
        if not stat.S_ISDIR(st.st_mode):
            return "not a directory"
        if uid is not None and st.st_uid != uid:
            return "owned by another user"
        if st.st_mode & 0o022:
            return "writable by other users"
        if not os.access(real, os.W_OK | os.X_OK):
            return "not writable"
        for parent in real.parents:
            ps = parent.stat()
            if uid is not None and ps.st_uid not in (uid, 0):
                return f"{one_line(parent)} above it is another user's"
            if ps.st_mode & 0o022 and not ps.st_mode & stat.S_ISVTX:
                return f"{one_line(parent)} above it is writable by other users"
    except (OSError, RuntimeError) as e:
        return f"cannot create it ({getattr(e, 'strerror', None) or e})"
    return None


def enable_compile_cache(environ: Mapping[str, str] | None = None) -> Path | None:
    """Turn on JAX's persistent compilation cache in `compile_cache_dir(environ)` (size-capped at
    CACHE_MAX_BYTES) and return the directory; None when there is none or it is unsafe (then one
    line on stderr says why, and the run compiles as usual). The setting stays for the process."""
    d = compile_cache_dir(environ)
    if d is None:
        return None
    why = _unsafe_cache_dir(d)
    if why:
        print(
            f"pnpjax: not caching compiled programs in {one_line(d)}: {why} (PNPJAX_CACHE_DIR=DIR to use another, empty: none)",
            file=sys.stderr,
        )
        return None
    import jax

    jax.config.update("jax_compilation_cache_dir", str(d))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", CACHE_MIN_COMPILE_SECONDS)
    if importlib.util.find_spec("filelock"):  # with the size cap JAX locks the directory with it
        jax.config.update("jax_compilation_cache_max_size", CACHE_MAX_BYTES)
    return d


# The names JAX's persistent cache gives its files (a program's name, its key's sha256, the kind):
# `pnpjax cache --clear` deletes these and nothing else, wherever PNPJAX_CACHE_DIR points.
_CACHE_FILE = re.compile(r"[^/]+-[0-9a-f]{64}-(cache|atime)")


def _programs(n: int) -> str:
    return f"{n:,} compiled program{'' if n == 1 else 's'}"


def _cache(args: argparse.Namespace) -> int:
    """`pnpjax cache [--clear]`: where the cache is, how many entries and bytes; --clear deletes them."""
    d, why = _cache_location(os.environ)
    if d is None:
        print(f"pnpjax cache: none ({why})")
        return 0
    try:
        files = [f for f in d.iterdir() if _CACHE_FILE.fullmatch(f.name) and f.is_file()] if d.is_dir() else []
        entries = [f for f in files if f.name.endswith("-cache")]
        size = 0
        for f in files:
            with contextlib.suppress(FileNotFoundError):  # another run may evict it meanwhile
                size += f.stat().st_size
        if args.clear:
            for f in files:
                f.unlink(missing_ok=True)
    except OSError as e:
        print(f"pnpjax cache: error: {one_line(d)}: {one_line(e.strerror or e)}", file=sys.stderr)
        return EXIT_USAGE
    if args.clear:
        print(f"pnpjax cache: removed {_programs(len(entries))} ({size:,} B) from {one_line(d)}")
    else:
        print(f"pnpjax cache: {one_line(d)}: {_programs(len(entries))}, {size:,} B (limit {CACHE_MAX_BYTES:,} B)")
    return 0


@contextlib.contextmanager
def _cache_notes(d: Path | None):
    """JAX warns (several lines, for every program, every run) when it cannot read or write a
    cache entry, compiles the program again and leaves an unreadable entry as it is: say each kind
    once in one line, with JAX's reason and what to do."""
    if d is None:
        yield
        return
    show, noted = warnings.showwarning, set()

    def showwarning(message, category, filename, lineno, file=None, line=None):
        text = str(message)
        kind = next((k for k in ("reading", "writing") if text.startswith(f"Error {k} persistent compilation")), None)
        if kind is None:
            return show(message, category, filename, lineno, file, line)
        if kind not in noted:
            noted.add(kind)
            reason = one_line(text.split("': ", 1)[-1])[:200]
            what = "reading an entry of" if kind == "reading" else "writing to"
            print(
                f"pnpjax: error {what} the compiled-program cache {one_line(d)} ({reason}; compiled instead):"
                " `pnpjax cache --clear` empties it, PNPJAX_CACHE_DIR= turns it off",
                file=sys.stderr,
            )

    warnings.showwarning = showwarning
    try:
        yield
    finally:
        warnings.showwarning = show


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2, no usage block); subparsers inherit the class."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {one_line(' '.join(message.split()))}\n")


def _train(args: argparse.Namespace, rest: list[str], t_start: float | None = None) -> int:
    import tyro

    if args.coordinator is not None:  # before anything creates a JAX array
        from pnpjax import distributed

        distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    from pnpjax import config, train

    base = config.get_config(args.config)
    if rest:
        panel = io.StringIO()  # tyro prints a multi-line error panel; keep stderr to one line
        try:
            with contextlib.redirect_stderr(panel):
                cfg = tyro.cli(config.Config, default=base, args=rest, prog="pnpjax train --config NAME --workdir DIR")
        except SystemExit as e:
            if e.code:
                reason = _panel_message(panel.getvalue())
                raise ConfigError(
                    f"bad override(s) {' '.join(rest)}{': ' + reason if reason else ''} "
                    "(see `pnpjax train --config NAME --help-overrides`)"
                ) from None
            return 0
    else:
        cfg = base
    validate.cli_seconds(args.seconds)
    if args.steps is not None:
        validate.cli_int(args.steps, "--steps", 1, 10**9)
        cfg = dataclasses.replace(cfg, steps=args.steps)
    summary = train.train_and_evaluate(
        cfg, args.workdir, seconds=args.seconds, progress=not args.no_progress, t_start=t_start
    )
    if train.is_primary():
        print(metrics_table({f"{cfg.name} (step {summary['step']}, {summary['wall_seconds']:.1f} s)": summary}))
        print(f"model written to {Path(args.workdir) / 'model'}")
    return 0


def _panel_message(text: str) -> str:
    """The message of a tyro error panel (title, rule, message, rule, hint) as one short line."""
    lines = [ln.strip().strip("│").strip() for ln in text.splitlines()]
    body: list[str] = []
    for ln in [ln for ln in lines if ln][1:]:  # after the title
        if set(ln) <= set("-─╭╮╰╯ "):  # a rule ends the message (or precedes it)
            if body:
                break
            continue
        body.append(ln)
    return " ".join(body)[:200]


def _load_solvers(paths: list[str]):
    from pnpjax import checkpoint

    solvers = [checkpoint.load(p) for p in paths]
    names = {s.layout.name for s in solvers}
    ks = {s.layout.num_points for s in solvers}
    if len(ks) > 1 or len(names) > 1:
        raise InputError(
            f"checkpoints have different layouts ({', '.join(sorted(names))}); compare one layout at a time"
        )
    return solvers


def _eval(args: argparse.Namespace) -> int:
    import jax

    from pnpjax import inference, protocols, train

    validate.cli_int(args.n, "--n", 1, validate.MAX_EVAL_N)
    validate.cli_int(args.seed, "--seed", 0, validate.MAX_SEED)
    validate.cli_int(args.refine, "--refine", 0, validate.MAX_REFINE)
    solvers = _load_solvers(args.checkpoint)
    layout = solvers[0].layout
    if args.protocol == "seed":
        proto = protocols.SEED_TEST
    else:
        cfg = getattr(solvers[0], "config", None)
        proto = cfg.realistic if cfg is not None else protocols.RealisticProtocol()
    batch = train.eval_batch(proto, layout, jax.random.key(args.seed), args.n)
    noise = _noise_model(args, proto)
    results = {}
    for path, s in zip(args.checkpoint, solvers):
        label = path + (
            f" +refine {args.refine}" + ("" if args.refine_cost == "image" else f" ({args.refine_cost})")
            if args.refine
            else ""
        )
        results[label] = inference.evaluate(s, batch, args.refine, args.refine_cost, noise)
    out = {"protocol": args.protocol, "layout": layout.name, "n": args.n, "key": args.seed, "results": results}
    if args.json == "-":  # the JSON instead of the table, for scripts
        print(json.dumps(out))
        return 0
    print(
        f"protocol {args.protocol} | layout {one_line(layout.name)} | {int(batch.valid.sum())} test poses (key {args.seed})"
    )
    print(metrics_table(results))
    if args.json:
        _atomic_write_text(Path(args.json), json.dumps(out, indent=1))
    return 0


def metrics_table(rows: dict[str, dict]) -> str:
    cols = [
        ("l1_3d", "L1-3D"),
        ("rot_mean_deg", "rot mean°"),
        ("rot_median_deg", "rot med°"),
        ("rot_p99_deg", "rot p99°"),
        ("trans_mean", "t mean"),
        ("trans_median", "t med"),
        ("reproj_rmse_median", "reproj med"),
        ("failures", ">30° frac"),
    ]
    rows = {one_line(k): v for k, v in rows.items()}  # a name from a path or a layout is one row, never two
    name_w = max([len("model")] + [len(k) for k in rows])
    head = f"{'model':<{name_w}} " + " ".join(f"{c[1]:>10}" for c in cols)
    lines = [head, "-" * len(head)]
    for name, r in rows.items():
        lines.append(f"{name:<{name_w}} " + " ".join(f"{r.get(k, float('nan')):>10.4g}" for k, _ in cols))
    return "\n".join(lines)


def _atomic_write(path: Path, write) -> None:
    """write(tmp) then rename to path; a path that cannot be written is the user's error (one line)."""
    fsio.atomic_write(path, write, InputError)


def _atomic_write_text(path: Path, text: str) -> None:
    _atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def _noise_model(args: argparse.Namespace, protocol):
    """--noise-3d/--noise-2d over the protocol's own noise (what --refine-cost ml assumes)."""
    from pnpjax import refine

    base = refine.noise_model_of(protocol)
    return refine.NoiseModel(
        base.sigma_3d if args.noise_3d is None else args.noise_3d,
        base.noise_2d if args.noise_2d is None else args.noise_2d,
    )


def predict_poses(solver, x, cam, refine_iters: int = 0, refine_cost: str = "image", noise=None):
    """Landmarks in a camera's image coordinates -> (N, 7) qx qy qz qw tx ty tz in its frame
    (`inference.predict_poses`; cam None is the seed convention)."""
    from pnpjax import inference

    return inference.predict_poses(solver, x, cam, refine_iters, refine_cost, noise)


def _predict(args: argparse.Namespace) -> int:
    import numpy as np

    from pnpjax import camera

    out = Path(args.output)
    if out.suffix not in (".npy", ".json"):
        raise InputError(f"output must be .npy or .json, got {out.name}")
    validate.cli_int(args.refine, "--refine", 0, validate.MAX_REFINE)
    validate.cli_int(args.refine_retry, "--refine-retry", 0, validate.MAX_REFINE)
    (solver,) = _load_solvers([args.checkpoint])
    if args.track:  # consecutive frames, some perhaps without landmarks
        x, present = readers.read_frames(Path(args.input), solver.layout.num_points, solver.layout)
    else:
        # solver.predict applies validate.landmarks' rules (naming the file), so they run once.
        x, present = (
            readers.read_landmarks(Path(args.input), solver.layout.num_points, solver.layout, check=False),
            None,
        )
    if args.camera is None and solver.protocol != "seed":
        raise InputError("this checkpoint takes pixels: give --camera fx,fy,cx,cy,width,height (or hfov=DEG,WxH)")
    cam = camera.parse_camera("seed" if args.camera is None else args.camera)
    if args.track:
        y = _tracked(args, solver, x, present, cam)
    else:
        if args.fps is not None or args.timestamps is not None:
            raise InputError("--fps and --timestamps need --track")
        noise = _noise_model(args, solver.test_protocol)
        y = solver.predict(
            x, cam or "seed", args.refine, args.refine_cost, noise, refine_retry=args.refine_retry, what=str(args.input)
        )
    if out.suffix == ".npy":
        _atomic_write(out, lambda tmp: np.save(tmp, y.astype(np.float32)))
    else:
        _atomic_write_text(out, json.dumps(y.tolist()))
    frame = "seed/OpenGL frame" if cam is None else "OpenCV camera frame"
    print(f"wrote {y.shape[0]} poses (qx qy qz qw tx ty tz, {frame}, {solver.layout.units}) to {out}")
    return 0


def _tracked(args: argparse.Namespace, solver, x, present, cam):
    """`predict --track`: the rows are consecutive frames (`present` False: no landmarks) -> one pose per frame."""
    import numpy as np

    from pnpjax import camera, track

    if args.refine:
        raise InputError("--track refines every frame itself; drop --refine")
    px = x if cam is not None else np.stack([x[..., 0], 1.0 - x[..., 1]], -1)  # seed coords -> its 1x1 pixels
    validate.to_normalized(px[present], (camera.SEED_CAMERA if cam is None else cam).intrinsics, str(args.input))
    if args.fps is not None and args.timestamps is not None:
        raise InputError("give --fps or --timestamps, not both")
    if args.timestamps is not None:
        time = readers.read_timestamps(Path(args.timestamps), x.shape[0])
    else:
        fps = 30.0 if args.fps is None else args.fps
        if not (np.isfinite(fps) and 0 < fps <= 1e6):
            raise InputError(f"--fps must be a positive number (at most 1e6), got {args.fps}")
        time = np.arange(x.shape[0]) / fps
    y = np.asarray(track.track_landmarks(solver, x, present, time, cam), np.float32)
    return validate.check_poses(y, opencv=cam is not None, what=f"the pose ({args.input})")


def _export(args: argparse.Namespace) -> int:
    from pnpjax import export

    quantize = args.quantize or ("float32" if args.format == "savedmodel" else "uint8")
    path = export.export_checkpoint(
        args.checkpoint,
        args.format,
        args.out,
        quantize=quantize,
        camera=args.camera,
        force=args.force,
        refine_iters=args.refine,
        refine_cost=args.refine_cost,
        refine_retry=args.refine_retry,
        tracker=args.tracker or None,
    )
    if args.format == "js":  # what a page downloads
        import gzip

        data = Path(path).read_bytes()
        extra = "with createTracker" if args.tracker else "no tracker: --tracker adds createTracker"
        print(
            f"wrote js export to {path} ({len(data):,} B, {len(gzip.compress(data, 9, mtime=0)):,} B gzip; {extra})"
            f" and its TypeScript declarations {export.JS_TYPES_FILE}"
        )
    else:
        print(f"wrote {args.format} export to {path}")
    return 0


def _refine_args(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument(
        "--refine-cost",
        choices=("image", "object", "ml"),
        default="image",
        help="image: 2D reprojection error; object: point-to-ray distances (SQPnP's); "
        "ml: the likelihood under 3D and 2D noise (--noise-3d, --noise-2d)",
    )
    p.add_argument(
        "--noise-3d", type=float, default=None, help=f"3D point noise std, layout units (default: {default})"
    )
    p.add_argument(
        "--noise-2d",
        type=float,
        default=None,
        help=f"landmark noise std as a fraction of the object's image size (default: {default})",
    )


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pnpjax", description="Tiny neural PnP solvers: train, evaluate, predict, export.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser(
        "train",
        help="train (or resume) a solver",
        description="Extra arguments override config fields, "
        "e.g. --loss l2_3d --model.widths 128 128 --seed-train.noise-cm 2 (pass --help-overrides for all).",
    )
    t.add_argument(
        "--config",
        required=True,
        help="blazeface6-seed | faceapi10-seed | blazeface6 | faceapi10 | blazeface6-web | blazeface6-seed-large "
        "| blazeface6-seed-plain | blazeface6-seed-geo | smoke",
    )
    t.add_argument("--workdir", required=True)
    t.add_argument("--seconds", type=float, default=None, help="stop after this wall time (compilation included)")
    t.add_argument("--steps", type=int, default=None, help="schedule length (overrides the config's steps)")
    t.add_argument("--no-progress", action="store_true")
    t.add_argument(
        "--coordinator",
        default=None,
        help="multi-process training (jax.distributed): HOST:PORT of process 0, "
        "or 'auto' on a cluster (SLURM, Open MPI); every process runs the same command",
    )
    t.add_argument("--num-processes", type=int, default=None, help="with --coordinator HOST:PORT")
    t.add_argument("--process-id", type=int, default=None, help="with --coordinator HOST:PORT: 0 .. num-processes - 1")

    e = sub.add_parser("eval", help="evaluate checkpoints on the same held-out draws")
    e.add_argument(
        "--checkpoint",
        action="append",
        required=True,
        help="model dir, workdir or original TF.js model dir; repeat to compare",
    )
    e.add_argument("--protocol", choices=("seed", "realistic"), default="seed")
    e.add_argument("--n", type=int, default=100_000)
    e.add_argument("--seed", type=int, default=0, help="PRNG key of the test draws")
    e.add_argument("--refine", type=int, default=0, help="Levenberg-Marquardt iterations after the network")
    _refine_args(e, "the evaluated protocol's")
    e.add_argument(
        "--json",
        default=None,
        metavar="FILE",
        help="also write the results as JSON to FILE ('-': print the JSON instead of the table)",
    )

    r = sub.add_parser("predict", help="poses for landmarks in a file")
    r.add_argument("--checkpoint", required=True)
    r.add_argument(
        "--input",
        required=True,
        help=".npy (N, K, 2) or .json list of K x 2 lists; for a layout that names "
        "its detector also the detector's output, e.g. (N, 68, 2) or face-api.js JSON for faceapi10",
    )
    r.add_argument("--output", required=True, help=".npy or .json, (N, 7) qx qy qz qw tx ty tz")
    r.add_argument(
        "--camera",
        default=None,
        help="seed | fx,fy,cx,cy,width,height | hfov=DEG,WxH (default: seed for seed checkpoints)",
    )
    r.add_argument("--refine", type=int, default=0, help="Levenberg-Marquardt iterations after the network")
    r.add_argument(
        "--refine-retry",
        type=int,
        default=0,
        help="ml: up to this many more iterations for rows whose fit is gross (the JS module's default: 20)",
    )
    _refine_args(r, "the checkpoint's protocol's")
    r.add_argument(
        "--track",
        action="store_true",
        help="rows are consecutive video frames (all-NaN or null rows: no "
        "landmarks); the pose tracker (pnpjax.track) writes one pose per frame",
    )
    r.add_argument("--fps", type=float, default=None, help="--track: frame rate (default 30)")
    r.add_argument(
        "--timestamps", default=None, help="--track: .npy or .json of one time per frame, seconds, non-decreasing"
    )

    x = sub.add_parser("export", help="web/TF exports of a checkpoint")
    x.add_argument("--checkpoint", required=True)
    x.add_argument("--format", choices=("tfjs", "js", "savedmodel"), required=True)
    x.add_argument("--out", required=True)
    x.add_argument(
        "--quantize",
        choices=("float32", "float16", "uint8"),
        default=None,
        help="weights' storage (default: uint8 for tfjs and js, the smallest; float32 for savedmodel)",
    )
    x.add_argument(
        "--camera", default="seed", help="seed | fx,fy,cx,cy,width,height: the image coordinates the export takes"
    )
    x.add_argument("--force", action="store_true", help="replace a non-empty --out")
    x.add_argument(
        "--refine",
        type=int,
        default=None,
        help="js: default Levenberg-Marquardt iterations after the network (0: the network alone; default 1)",
    )
    x.add_argument(
        "--refine-cost",
        choices=("image", "object", "ml"),
        default=None,
        help="js: default refinement cost (default ml, with the checkpoint's noise model)",
    )
    x.add_argument(
        "--refine-retry",
        type=int,
        default=None,
        help="js: default extra ml iterations for gross fits (default 20; see pnpjax predict --refine-retry)",
    )
    x.add_argument(
        "--tracker",
        action="store_true",
        help="js: include createTracker, the video pose tracker (pnpjax predict --track), ~2 KB more",
    )
    c = sub.add_parser(
        "cache",
        help="where the compiled-program cache is, its entries and bytes",
        description=f"The CLI's compiled-program cache: ${CACHE_ENV}, else $XDG_CACHE_HOME/pnpjax/jax, else "
        f"~/.cache/pnpjax/jax (${CACHE_ENV}= turns it off).",
    )
    c.add_argument("--clear", action="store_true", help="delete its entries (only JAX's cache files)")
    return p


def main(argv: list[str] | None = None) -> int:
    import time

    t_start = time.perf_counter()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args, rest = parser.parse_known_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    if rest and args.command != "train":
        return _usage_error(parser, f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "train" and "--help-overrides" in rest:
        return _help_overrides(args)
    if args.command == "cache":
        return _cache(args)
    try:
        with _cache_notes(enable_compile_cache()):
            if args.command == "train":
                return _train(args, rest, t_start)
            return {"eval": _eval, "predict": _predict, "export": _export}[args.command](args)
    except PnpjaxError as e:
        print(f"pnpjax {args.command}: error: {one_line(e)}", file=sys.stderr)  # user text may hold line breaks
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"pnpjax {args.command}: interrupted", file=sys.stderr)
        return 130


def _usage_error(parser: argparse.ArgumentParser, message: str) -> int:
    try:
        parser.error(message)
    except SystemExit as e:
        return e.code
    return EXIT_USAGE


def _help_overrides(args: argparse.Namespace) -> int:
    """Every override with the defaults of the chosen --config (not the base Config's)."""
    import tyro

    from pnpjax import config

    try:
        base = config.get_config(args.config)
    except PnpjaxError as e:
        print(f"pnpjax train: error: {one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    try:
        tyro.cli(
            config.Config, default=base, args=["--help"], prog=f"pnpjax train --config {args.config} --workdir DIR"
        )
    except SystemExit as e:
        return e.code or 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
