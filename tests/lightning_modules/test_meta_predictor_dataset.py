"""MetaPredictorModule with the dataset (image-set) task encoder: fits on image-task episodes,
never on the held-out task, and reads the task from its images alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml

from nag.benchmarks.nb201 import NB201Benchmark
from nag.cli import main
from nag.datamodules.image_task import ImageTaskDataModule
from nag.datamodules.task import TaskDataModule
from nag.errors import ConfigError, NagError
from nag.lightning_modules import MetaPredictorModule

ROOT = Path(__file__).resolve().parents[2]
HELD = "digits_all"
NO_TRAINER = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def dm(image_tasks: dict) -> ImageTaskDataModule:
    return ImageTaskDataModule(
        image_tasks["scores"],
        image_tasks["tasks"],
        HELD,
        images_per_class=3,
        image_size=8,
        query_size=6,
        train_episodes=16,
        eval_episodes=4,
        batch_size=4,
        seed=0,
    )


def make_model(dm: ImageTaskDataModule, **kwargs) -> MetaPredictorModule:
    torch.manual_seed(0)
    return MetaPredictorModule(dm.spec(), hidden=16, num_layers=1, task_encoder="dataset", cnn_channels=4, **kwargs)


@pytest.mark.parametrize("train_cnn", [True, False])
def test_fit_and_test_never_train_on_the_held_out_task(
    dm: ImageTaskDataModule, tmp_path: Path, train_cnn: bool
) -> None:
    model = make_model(dm, train_cnn=train_cnn)
    cnn_before = [p.detach().clone() for p in model.dataset_encoder.cnn.parameters()]
    seen: list[torch.Tensor] = []
    step = model.training_step

    def spy(batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        seen.append(batch["task"].clone())
        return step(batch, batch_idx)

    model.training_step = spy
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, dm)
    metrics = trainer.test(model, dm, verbose=False)[0]
    assert len(seen) == 4 and dm.task_names.index(HELD) not in torch.cat(seen).tolist()
    assert -1 <= metrics["test/spearman"] <= 1
    moved = [not torch.equal(a, b) for a, b in zip(cnn_before, model.dataset_encoder.cnn.parameters())]
    assert all(moved) if train_cnn else not any(moved)


@NO_TRAINER
def test_a_held_out_episode_in_training_is_refused(dm: ImageTaskDataModule) -> None:
    model = make_model(dm)
    batch = next(iter(dm.test_dataloader()))
    with pytest.raises(NagError, match="held-out task 'digits_all'"):
        model.training_step(batch, 0)
    with pytest.raises(NagError, match="held-out task"):
        model.validation_step(batch, 0)


def test_the_task_is_read_from_the_images(dm: ImageTaskDataModule) -> None:
    model = make_model(dm).eval()
    batch = next(iter(dm.val_dataloader()))
    with torch.no_grad():
        task_vec = model.encode_task(batch)
        torch.testing.assert_close(task_vec, model.encode_images(batch["images"], batch["class_mask"]))
        other = model.encode_task(
            batch | {"images": batch["images"].flip(0), "class_mask": batch["class_mask"].flip(0)}
        )
    assert task_vec.shape == (4, 16) and not torch.allclose(task_vec, other)
    with pytest.raises(NagError, match="encode_context needs model.task_encoder=context"):
        model.encode_context(batch["ctx_x"], batch["ctx_adj"], batch["ctx_mask"], batch["ctx_y"])


def test_no_task_encoder_is_a_pooled_predictor(dm: ImageTaskDataModule) -> None:
    torch.manual_seed(0)
    model = MetaPredictorModule(dm.spec(), hidden=16, num_layers=1, task_encoder="none").eval()
    batch = next(iter(dm.val_dataloader()))
    assert not model.encode_task(batch).any()
    with pytest.raises(NagError, match="encode_images needs model.task_encoder=dataset"):
        model.encode_images(batch["images"], batch["class_mask"])


def test_dataset_encoder_needs_image_tasks(image_tasks: dict) -> None:
    plain = TaskDataModule(
        [NB201Benchmark(image_tasks["scores"])], list(image_tasks["tasks"]), HELD, context_size=2, query_size=4
    )
    with pytest.raises(ConfigError, match="model.task_encoder=dataset .*ImageTaskDataModule"):
        MetaPredictorModule(plain.spec(), task_encoder="dataset")
    with pytest.raises(ConfigError, match="model.task_encoder='set'"):
        MetaPredictorModule(plain.spec(), task_encoder="set")


def test_config_fits_and_its_checkpoint_reloads(image_tasks: dict, tmp_path: Path) -> None:
    config = yaml.safe_load((ROOT / "configs/images/meta_predictor.yaml").read_text())
    config["data"]["init_args"] |= {
        "scores": image_tasks["scores"],
        "tasks": image_tasks["tasks"],
        "images_per_class": 2,
        "train_episodes": 8,
        "eval_episodes": 4,
        "batch_size": 4,
        "query_size": 6,
    }
    config["trainer"] |= {
        "max_epochs": 1,
        "default_root_dir": str(tmp_path),
        "enable_progress_bar": False,
        "logger": False,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    main(["fit", "--config", str(path)])
    ckpt = next(tmp_path.rglob("last.ckpt"))
    model = MetaPredictorModule.load_from_checkpoint(ckpt, map_location="cpu").eval()
    assert model.hparams.task_encoder == "dataset" and HELD not in model.hparams.data_spec["target_stats"]
