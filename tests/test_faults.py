"""The bad-input contract, as one table: what a newcomer's afternoon throws at the commands.

Each row runs a real command in a subprocess. A row that expects an error asserts exit status 2,
exactly one line on stderr that starts with "error:" and holds the row's words, and that nothing
under the test's folder (results folder, store, data copies) was created or changed. A row that
expects success says what the output must show. Read-only places are made read-only for real (a
read-only bind mount, else `chattr +i`), since chmod does not stop root from writing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ablations.grid.spec import load_grid
from ablations.store.sqlite import STORE_NAME, Store, new_owner

REAL_MNIST = Path(os.environ.get("ABLATIONS_DATA_ROOT", "")) / "MNIST" / "raw"
needs_mnist = pytest.mark.skipif(not REAL_MNIST.is_dir(), reason="needs the real MNIST files")
# Every download goes to a closed local port: "no network" on every machine.
NO_NETWORK = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
# Small enough to train in seconds on a busy 2-core CPU (synthetic data, 64 images, 2 steps).
TINY = ("--set", "train_subset=64", "--set", "test_subset=64", "--set", "batch_size=32")
TINY_TRAIN = ("--dataset", "synthetic", "--epochs", "1", "--train-subset", "64", "--test-subset", "64",
              "--batch-size", "32")
SMOKE_RUNS = 8


def module(name: str, *args: str) -> tuple[str, ...]:
    return (sys.executable, "-m", name, *args)


GRID = module("ablations.run_grid", "--no-report")
TRAIN = module("ablations.train")
SUMMARY = module("ablations.store", "summary")
REPORT = module("ablations.report")


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


# ---- scenes: what the folder holds before the command runs --------------------------------
class Scene:
    """The test's folder: {results}, {data} and {grid} in a row's command point into it."""

    def __init__(self, root: Path, undo: list[list[str]]) -> None:
        self.root, self.undo = root, undo
        self.results, self.data, self.grid = root / "results", root / "data", root / "grid.toml"
        self.env: dict[str, str] = {}

    def fill(self, command: tuple[str, ...]) -> list[str]:
        return [part.format(results=self.results, data=self.data, grid=self.grid) for part in command]

    def read_only(self, path: Path) -> None:
        """Make `path` (file or folder) read-only even to root: a read-only bind mount, else the
        immutable attribute; skip the row, saying why, if neither is allowed here."""
        if os.geteuid() != 0:  # chmod binds everyone but root
            path.chmod(0o555 if path.is_dir() else 0o444)
            self.undo.append(["chmod", "u+w", str(path)])
            return
        if _ok(["mount", "--bind", str(path), str(path)]):
            self.undo.append(["umount", str(path)])
            if _ok(["mount", "-o", "remount,bind,ro", str(path)]):
                return
        if shutil.which("chattr") and _ok(["chattr", "+i", str(path)]):
            self.undo.append(["chattr", "-i", str(path)])
            return
        pytest.skip("running as root without mount or chattr: cannot make a real read-only place")


def _ok(command: list[str]) -> bool:
    return subprocess.run(command, capture_output=True).returncode == 0


def nothing(scene: Scene) -> None:
    pass


def ray_address_nobody_listens_on(scene: Scene) -> None:
    with socket.socket() as probe:  # a port the system just handed out, closed again
        probe.bind(("127.0.0.1", 0))
        scene.env["RAY_ADDRESS"] = f"127.0.0.1:{probe.getsockname()[1]}"


def grid_file(text: str) -> Callable[[Scene], None]:
    def write(scene: Scene) -> None:
        scene.grid.write_text(f'description = "a newcomer\'s grid"\n{text}\n[axes]\naugment = ["none"]\n')
    return write


def grid_bytes(data: bytes) -> Callable[[Scene], None]:
    """A whole grid file, byte for byte (its own [axes] and [fixed], or bytes that are not UTF-8)."""
    def write(scene: Scene) -> None:
        scene.grid.write_bytes(data)
    return write


def file_as_results(scene: Scene) -> None:
    scene.results.write_text("my notes, not a folder\n")


def smoke_store(scene: Scene, *, publishable: bool = True) -> None:
    """A finished smoke grid's store, as a grid leaves it (rollback journal), without training."""
    grid = load_grid("smoke")
    with Store(scene.results / STORE_NAME) as store:
        store.enqueue(grid.configs(), grid=grid.name, grid_spec=grid.spec())
        owner = new_owner()
        for cfg in grid.configs():
            store.claim(cfg.run_id, owner)
            epochs = [{"epoch": 1, "lr": 0.1, "train_loss": 0.5, "val_acc": 0.9, "test_acc": 0.9}]
            result = {"status": "done", "final_test_acc": 0.9, "final_val_acc": 0.9, "wall_s": 1.0, "epochs": epochs}
            store.finish(cfg.run_id, owner, result, {"host": "test", "notes": "x" * 3000})  # a few pages each
        assert not publishable or store.make_publishable()


def wal_store(scene: Scene) -> None:
    """The same store left in WAL mode, as `Store()` from Python leaves it."""
    smoke_store(scene, publishable=False)


def read_only_results(scene: Scene) -> None:
    smoke_store(scene)
    scene.read_only(scene.results)


def read_only_store(scene: Scene) -> None:
    smoke_store(scene)
    scene.read_only(scene.results / STORE_NAME)


def corrupt_store(scene: Scene) -> None:
    """Header page intact, the back half of the pages overwritten: SQLite opens it, reading fails."""
    smoke_store(scene)
    path = scene.results / STORE_NAME
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    pages = len(data) // page
    assert pages >= 4
    for i in range(pages // 2, pages):
        data[i * page + 8: (i + 1) * page] = bytes([0xA5]) * (page - 8)
    path.write_bytes(bytes(data))


def mnist_copy(scene: Scene, root: Path | None = None) -> Path:
    raw = (root or scene.data) / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for source in REAL_MNIST.iterdir():
        shutil.copyfile(source, raw / source.name)
    return raw


def truncated_images(scene: Scene) -> None:
    path = mnist_copy(scene) / "train-images-idx3-ubyte"
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2)


def garbage(name: str) -> Callable[[Scene], None]:
    def damage(scene: Scene) -> None:
        path = mnist_copy(scene) / name
        path.write_bytes(os.urandom(path.stat().st_size))
    return damage


def one_level_too_deep(scene: Scene) -> None:
    mnist_copy(scene)  # {data}/MNIST/raw/...; the row points --data-root at {data}/MNIST


def image_folder_with_a_truncated_image(scene: Scene) -> None:
    """{data}/pets/<class>/ of real PNGs, one of them cut in half: its header reads, its pixels do not."""
    from PIL import Image

    for value, name in enumerate(("cat", "dog", "eel")):
        (scene.data / "pets" / name).mkdir(parents=True)
        for i in range(4):
            Image.new("L", (16, 16), 60 * value + i).save(scene.data / "pets" / name / f"{i}.png")
    broken = scene.data / "pets" / "eel" / "1.png"
    Image.frombytes("L", (16, 16), hashlib.sha256(b"noise").digest() * 8).save(broken)
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])


def missing(package: str) -> Callable[[Scene], None]:
    """A scene where `import package` fails as it does where the package is not installed, without
    uninstalling it (an optional extra: Ray, timm)."""
    def hide(scene: Scene) -> None:
        shim = scene.root / f"no_{package}" / package
        shim.mkdir(parents=True)
        (shim / "__init__.py").write_text(f'raise ImportError("No module named {package!r}")\n')
        scene.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(shim.parent), os.environ.get("PYTHONPATH")]))

    return hide


# ---- what a successful row must show ------------------------------------------------------
def skips_everything_and_leaves_one_file(proc: subprocess.CompletedProcess, scene: Scene) -> None:
    assert f"0 done, 0 diverged, 0 failed, {SMOKE_RUNS} skipped" in proc.stdout
    folder = scene.root / "smoke"
    store = folder / STORE_NAME
    sqlite3.connect(store).execute("SELECT 1").connection.close()  # what any reader does
    assert sorted(p.name for p in folder.iterdir()) == [STORE_NAME]  # no -wal, no -shm
    with Store.open_existing(store) as reader:
        assert reader.counts()["done"] == SMOKE_RUNS


def summary_of_the_smoke_store(proc: subprocess.CompletedProcess, scene: Scene) -> None:
    assert f"done      {SMOKE_RUNS}" in proc.stdout and f"total     {SMOKE_RUNS}" in proc.stdout


def strict_json_diverged(proc: subprocess.CompletedProcess, scene: Scene) -> None:
    def reject(constant: str):
        raise AssertionError(f"{constant} is not JSON")

    summary = json.loads(proc.stdout.strip().splitlines()[-1], parse_constant=reject)
    assert summary["status"] == "diverged" and summary["final_test_loss"] is None


# ---- the table ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    command: tuple[str, ...]
    words: tuple[str, ...] = ()  # in the one stderr line of an error row
    code: int = 2
    scene: Callable[[Scene], None] = nothing
    check: Callable[[subprocess.CompletedProcess, Scene], None] | None = None  # a row that succeeds
    times: int = 1  # run the command this many times; the last one is checked
    marks: tuple = field(default=())


ROWS = {
    "same command twice: the second skips all": Row(
        (*module("ablations.run_grid"), "--grid", "smoke", "--results", "smoke", "--no-report", "--workers", "1",
         *TINY), code=0, times=2, check=skips_everything_and_leaves_one_file),
    "toml seeds = 'two'": Row((*GRID, "--grid", "{grid}", "--results", "{results}"),
                              ("seeds", "expected a count", "'two'"), scene=grid_file('seeds = "two"')),
    "toml seeds = 2.5": Row((*GRID, "--grid", "{grid}", "--results", "{results}"),
                            ("seeds", "expected a count", "2.5"), scene=grid_file("seeds = 2.5")),
    "toml fixed = 3": Row((*GRID, "--grid", "{grid}", "--results", "{results}"),
                          ("[fixed] must be a table",), scene=grid_file("fixed = 3")),
    "toml seeds = [0, 0]": Row((*GRID, "--grid", "{grid}", "--results", "{results}"),
                               ("seed 0 is listed twice",), scene=grid_file("seeds = [0, 0]")),
    "toml seeds = 0": Row((*GRID, "--grid", "{grid}", "--results", "{results}"),
                          ("seeds must be 1 or more",), scene=grid_file("seeds = 0")),
    "--axis augment=none,none": Row((*GRID, "--grid", "smoke", "--results", "{results}", "--axis", "augment=none,none"),
                                    ("--axis: axis 'augment' lists 'none' twice",)),
    "toml axis with a level twice": Row((*GRID, "--grid", "{grid}", "--results", "{results}"),
                                        ("grid.toml: axis 'augment' lists 'hflip' twice",),
                                        scene=grid_bytes(b'[axes]\naugment = ["hflip", "none", "hflip"]\n')),
    "toml key in both [axes] and [fixed]": Row(
        (*GRID, "--grid", "{grid}", "--results", "{results}"), ("grid.toml: 'epochs' is in both [axes] and [fixed]",),
        scene=grid_bytes(b"[fixed]\nepochs = 1\n[axes]\nepochs = [1, 2]\n")),
    "toml empty axis": Row((*GRID, "--grid", "{grid}", "--results", "{results}"),
                           ("grid.toml: axis 'augment' needs a non-empty list",),
                           scene=grid_bytes(b"[axes]\naugment = []\n")),
    "toml not UTF-8": Row((*GRID, "--grid", "{grid}", "--results", "{results}"),
                          ("grid.toml is not UTF-8 text (byte 0xe9 on line 1)", "save it as UTF-8"),
                          scene=grid_bytes(b'description = "r\xe9sum\xe9"\n[axes]\naugment = ["none"]\n')),
    "toml malformed": Row((*GRID, "--grid", "{grid}", "--results", "{results}"),
                          ("grid.toml is not valid TOML", "line 1"), scene=grid_bytes(b"[axes\naugment = ['none']\n")),
    "--results is a file": Row((*GRID, "--grid", "smoke", "--results", "{results}"),
                               ("is a file", "give a folder"), scene=file_as_results),
    "read-only results folder: grid": Row((*GRID, "--grid", "smoke", "--results", "{results}"),
                                          ("results is read-only",), scene=read_only_results),
    "read-only results folder: summary reads it": Row((*SUMMARY, "--results", "{results}"), code=0,
                                                      scene=read_only_results, check=summary_of_the_smoke_store),
    "read-only store: grid": Row((*GRID, "--grid", "smoke", "--results", "{results}"),
                                 ("runs.sqlite is read-only", "copy it"), scene=read_only_store),
    "read-only store: summary reads it": Row((*SUMMARY, "--results", "{results}"), code=0, scene=read_only_store,
                                             check=summary_of_the_smoke_store),
    "a store left in WAL mode: summary reads it as it is": Row((*SUMMARY, "--results", "{results}"), code=0,
                                                                scene=wal_store, check=summary_of_the_smoke_store),
    "corrupt store pages: summary": Row((*SUMMARY, "--results", "{results}"),
                                        ("runs.sqlite is damaged", "backup"), scene=corrupt_store),
    "corrupt store pages: report": Row((*REPORT, "--results", "{results}"),
                                       ("runs.sqlite is damaged", "backup"), scene=corrupt_store),
    "corrupt store pages: grid": Row((*GRID, "--grid", "smoke", "--results", "{results}"),
                                     ("runs.sqlite is damaged", "backup"), scene=corrupt_store),
    "--device cuda without a GPU: train": Row((*TRAIN, *TINY_TRAIN, "--device", "cuda"),
                                              ("device 'cuda' is not available", "devices: cpu"),
                                              marks=("no_cuda",)),
    "--device cuda without a GPU: grid": Row((*GRID, "--grid", "smoke", "--results", "{results}", "--device", "cuda"),
                                             ("device 'cuda' is not available", "devices: cpu"),
                                             marks=("no_cuda",)),
    "truncated MNIST image file": Row((*TRAIN, "--dataset", "mnist", "--data-root", "{data}", "--epochs", "1"),
                                      ("train-images-idx3-ubyte is damaged", "bytes where its header promises",
                                       "delete it"), scene=truncated_images, marks=("mnist",)),
    "garbage MNIST image file": Row(
        (*GRID, "--grid", "quick", "--results", "{results}", "--set", "data_root={data}"),
        ("t10k-images-idx3-ubyte is damaged", "not an idx file", "delete it"),
        scene=garbage("t10k-images-idx3-ubyte"), marks=("mnist",)),
    "garbage MNIST label file": Row((*TRAIN, "--dataset", "mnist", "--data-root", "{data}", "--epochs", "1"),
                                    ("train-labels-idx1-ubyte is damaged", "not an idx file", "delete it"),
                                    scene=garbage("train-labels-idx1-ubyte"), marks=("mnist",)),
    "data root one level too deep": Row(
        (*TRAIN, "--dataset", "mnist", "--data-root", "{data}/MNIST", "--epochs", "1"),
        ("looks like a dataset folder itself", "point --data-root", "holds MNIST/"),
        scene=one_level_too_deep, marks=("mnist",)),
    "an image folder with a truncated image: grid": Row(
        (*GRID, "--grid", "smoke", "--results", "{results}", "--set", "dataset=imagefolder:{data}/pets"),
        ("pets/eel/1.png is not a readable image", "replace or remove it"), scene=image_folder_with_a_truncated_image),
    "a torchvision class of another kind": Row((*TRAIN, "--dataset", "torchvision:VOCDetection", "--data-root", "{data}"),
                                               ("torchvision dataset VOCDetection is not supported", "KMNIST")),
    "--workers 0": Row((*GRID, "--grid", "smoke", "--results", "{results}", "--workers", "0"),
                       ("--workers must be 1 or more, got 0",)),
    "--backend ray without Ray": Row((*GRID, "--grid", "smoke", "--results", "{results}", "--backend", "ray"),
                                     ("needs Ray", "not installed", "--backend local"), scene=missing("ray")),
    "--backend ray with a malformed --address": Row(
        (*GRID, "--grid", "smoke", "--results", "{results}", "--backend", "ray", "--address", "nohost:notaport"),
        ("--address 'nohost:notaport' is not a Ray address", "host:port, ray://host:port, auto or local")),
    "--address without --backend ray": Row(
        (*GRID, "--grid", "smoke", "--results", "{results}", "--address", "127.0.0.1:6379"),
        ("--address 127.0.0.1:6379 is for the ray backend", "add --backend ray")),
    "--backend ray with $RAY_ADDRESS on a closed port": Row(
        (*GRID, "--grid", "smoke", "--results", "{results}", "--backend", "ray"),
        ("cannot reach Ray at 127.0.0.1:", "($RAY_ADDRESS): connection refused", "ray start --head"),
        scene=ray_address_nobody_listens_on),
    "unknown torchvision model in a grid": Row(
        (*GRID, "--grid", "smoke", "--results", "{results}", "--set", "model=torchvision:resnet19"),
        ("unknown torchvision model 'resnet19'", "close matches: torchvision:resnet18", "--list-models")),
    "a model that cannot take the input size, in a grid": Row(
        (*GRID, "--grid", "smoke", "--results", "{results}", "--set", "model=torchvision:vit_b_16"),
        ("torchvision:vit_b_16 takes 224 px inputs, got 28 px; set --image-size 224",)),
    "--model timm:NAME without timm": Row((*TRAIN, *TINY_TRAIN, "--model", "timm:resnet18"),
                                          ("need timm", "not installed", 'pip install -e ".[timm]"'), scene=missing("timm")),
    "batch larger than the training set": Row(
        (*GRID, "--grid", "quick", "--results", "{results}", "--set", "batch_size=5000", "--set", "train_subset=1000"),
        ("batch-size 5000 is larger than the training set (1000 images)",), marks=("mnist",)),
    "a smoke store reused for the quick grid": Row((*GRID, "--grid", "quick", "--results", "{results}"),
                                                   ("holds grid 'smoke'", "another --results folder"),
                                                   scene=smoke_store),
    "--lr 1e6 --json: strict JSON, diverged, exit 1": Row(  # 10 steps: enough for the loss to blow up
        (*TRAIN, *TINY_TRAIN, "--train-subset", "320", "--lr", "1e6", "--json"), code=1, check=strict_json_diverged),
}


def with_marks(rows: dict[str, Row]) -> list:
    marks = {
        "mnist": needs_mnist,
        "no_cuda": pytest.mark.skipif(cuda_available(), reason="this machine has a GPU: cuda is valid here"),
    }
    return [pytest.param(row, id=name, marks=[marks[m] for m in row.marks]) for name, row in rows.items()]


@pytest.fixture
def scene(tmp_path: Path):
    undo: list[list[str]] = []
    yield Scene(tmp_path, undo)
    for command in reversed(undo):  # unmount before pytest removes the folder
        subprocess.run(command, capture_output=True)


def snapshot(root: Path) -> dict[str, str]:
    """Every path under root with its content hash ("dir" for folders): any created, changed or
    removed file or folder shows."""
    found = {}
    for path in sorted(root.rglob("*")):
        found[str(path.relative_to(root))] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@pytest.mark.parametrize("row", with_marks(ROWS))
def test_bad_input_contract(row: Row, scene: Scene) -> None:
    row.scene(scene)
    env = {**os.environ, **NO_NETWORK, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1", **scene.env}
    before = snapshot(scene.root)
    for _ in range(row.times):
        proc = subprocess.run(scene.fill(row.command), cwd=scene.root, env=env, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == row.code, proc.stderr[-3000:]
    if row.check is not None:
        row.check(proc, scene)
        if row.times == 1:  # a command that only reads leaves everything as it was
            assert snapshot(scene.root) == before
        return
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    assert all(word in lines[0] for word in row.words), lines[0]
    assert snapshot(scene.root) == before
