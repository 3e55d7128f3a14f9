"""A run stopped in the middle resumes at its last saved epoch, with the numbers of a run that never stopped."""

import dataclasses

import pytest

from ablations.config import TrainConfig
from ablations.data.dataset import load_dataset
from ablations.grid.driver import execute
from ablations.grid.executors import InlineExecutor
from ablations.run.checkpoint import Checkpoint, checkpoint_path
from ablations.run.loop import train
from ablations.store.sqlite import Store

# Real MNIST, small enough for seconds per run. Momentum, weight decay, augmentation and a step decay
# inside the run: every piece of state a resumed run needs (momentum buffers, both random streams,
# the schedule's position) changes its numbers if it is not restored.
CFG = TrainConfig(dataset="mnist", train_subset=768, val_subset=256, test_subset=256, epochs=4, batch_size=64,
                  augment="notebook", weight_decay=1e-3, lr=0.01, momentum=0.9, schedule="step", precision="fp32",
                  device="cpu")
TIMES = ("seconds", "images_per_s")  # wall-clock figures: the only numbers that may differ


class Stop(Exception):
    pass


def stop_after(epoch: int):
    def on_epoch(metrics: dict) -> None:
        if metrics["epoch"] == epoch:
            raise Stop

    return on_epoch


def numbers(epochs: list[dict]) -> list[dict]:
    return [{k: v for k, v in e.items() if k not in TIMES} for e in epochs]


@pytest.fixture(scope="module")
def data(device):
    return load_dataset("mnist", train_subset=768, val_subset=256, test_subset=256, device=device)


@pytest.fixture(scope="module")
def straight(data):
    return train(CFG, data)


def test_a_run_stopped_after_epoch_2_resumes_at_epoch_3_with_the_numbers_of_one_that_never_stopped(
        data, straight, tmp_path):
    path = tmp_path / "run.pt"
    with pytest.raises(Stop):
        train(CFG, data, on_epoch=stop_after(2), checkpoint=Checkpoint(path, save_every_s=0))
    assert path.exists()

    seen = []
    resumed = train(CFG, data, on_epoch=lambda m: seen.append(m["epoch"]), checkpoint=Checkpoint(path, save_every_s=0))
    assert seen == [3, 4]  # epochs 1-2 came from the checkpoint, not from training them again
    assert resumed.resumed_at_epoch == 3
    assert numbers(resumed.epochs) == numbers(straight.epochs)  # to the last bit: same batches, same state
    assert resumed.final_test_acc == straight.final_test_acc > 0.5  # chance is 0.1
    assert not path.exists()  # the finished run removes its checkpoint


def test_checkpoints_are_written_no_more_often_than_asked(data, tmp_path):
    path = tmp_path / "run.pt"
    with pytest.raises(Stop):
        train(CFG, data, on_epoch=stop_after(3), checkpoint=Checkpoint(path, save_every_s=3600))
    assert not path.exists()  # no hour has passed: nothing was saved, and a restart begins at epoch 1


@pytest.mark.parametrize("content, why", [(b"not a checkpoint", "cannot be read"), (None, "belongs to run")])
def test_a_checkpoint_that_is_unreadable_or_of_another_run_is_ignored_with_a_warning(data, straight, tmp_path,
                                                                                    capsys, content, why):
    path = tmp_path / "run.pt"
    if content is None:  # a checkpoint of the same settings with another seed
        other = dataclasses.replace(CFG, seed=1, epochs=2)
        with pytest.raises(Stop):
            train(other, data, on_epoch=stop_after(1), checkpoint=Checkpoint(path, save_every_s=0))
    else:
        path.write_bytes(content)
    result = train(CFG, data, checkpoint=Checkpoint(path, save_every_s=0))
    err = capsys.readouterr().err
    assert why in err and "the run starts from epoch 1" in err
    assert result.resumed_at_epoch is None
    assert numbers(result.epochs) == numbers(straight.epochs)


def test_a_grid_resumes_a_stopped_run_from_the_checkpoint_beside_its_store_and_records_it(data, straight,
                                                                                        results_dir):
    path = checkpoint_path(results_dir, CFG.run_id)
    with pytest.raises(Stop):  # what a killed grid leaves behind: the run's checkpoint after epoch 2
        train(CFG, data, on_epoch=stop_after(2), checkpoint=Checkpoint(path, save_every_s=0))

    with Store(results_dir / "runs.sqlite") as store:
        store.enqueue([CFG], grid="g")
        counts = execute(store, [[CFG]], InlineExecutor())
        run, = store.runs()
        epochs = store.epochs(CFG.run_id)
    assert counts == {"done": 1}
    provenance = run["provenance"]
    assert provenance["resumed_at_epoch"] == 3 and "checkpoint_commit" in provenance
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4]  # the store holds the whole run
    assert run["final_test_acc"] == straight.final_test_acc
    assert not path.parent.exists()  # the last checkpoint's folder goes with it
