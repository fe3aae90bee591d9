"""Run by ``test_distributed.py`` under ``torchrun --nproc-per-node 2`` (gloo, CPU).

``python ddp_checks.py OUT SHARDS_JSON SETTINGS_JSON``: each rank loads ``OUT/inputs.pt`` (a
global batch written by the test), takes its half, and saves to ``OUT/rank{R}.pt``:

- ``gathered``: the CrossPoint loss of embeddings gathered from both ranks
  (``gather_with_grad``) and the gradients reaching this rank's half;
- ``local`` / ``global``: the loss and the parameter gradients of one DDP step of the tiny
  encoders on this rank's half of the batch, with each rank's own negatives / the gathered
  ones (``embedding_loss``, the training loop's own function);

then pretrains one epoch on SHARDS as a ShardSet of unknown length (the ranks hold unequal
shares) and writes the summary to ``OUT/summary{R}.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from xpt.train.config import PretrainConfig
from xpt.train.crosspoint import build_models, embedding_loss
from xpt.train.data import ShardSet, resolve_shards
from xpt.train.distributed import environment, gather_with_grad, process_group, wrap
from xpt.train.loop import pretrain
from xpt.train.losses import crosspoint_loss


def main(out: Path, shards: list[str], settings: dict) -> None:
    torch.set_num_threads(1)
    env = environment()
    cpu = torch.device("cpu")
    inputs = torch.load(out / "inputs.pt", weights_only=True)
    with process_group(env, cpu):
        b = inputs["images"].shape[0] // env.world_size
        mine = slice(env.rank * b, (env.rank + 1) * b)
        result = {}

        parts = [inputs[name][mine].clone().requires_grad_() for name in ("z_a", "z_b", "z_img")]
        loss = crosspoint_loss(*[gather_with_grad(p) for p in parts])["loss"]
        loss.backward()
        result["gathered"] = {"loss": loss.item(), "grads": [p.grad for p in parts]}

        for mode in ("local", "global"):
            config = PretrainConfig(**settings, global_negatives=mode == "global")
            point, image = build_models(config)
            pair = torch.cat([inputs["view_a"][mine], inputs["view_b"][mine]])
            # (the wrappers must live until backward: their hooks average the gradients)
            point_net, image_net = wrap(point, env, cpu), wrap(image, env, cpu)
            losses = embedding_loss(
                point_net,
                image_net,
                pair,
                inputs["images"][mine],
                config,
                gather=gather_with_grad if mode == "global" else None,
            )
            losses["loss"].backward()
            grads = {f"point.{n}": p.grad for n, p in point.named_parameters()}
            grads |= {f"image.{n}": p.grad for n, p in image.named_parameters()}
            result[mode] = {"loss": losses["loss"].item(), "grads": grads}
        torch.save(result, out / f"rank{env.rank}.pt")

        urls = resolve_shards(shards).urls  # (count known, but left out below)
        # (streamed: a full shuffle would index the shards and know the count)
        config = PretrainConfig(**settings, epochs=1, lr_schedule="epoch", shuffle="buffer")
        summary = pretrain(config, ShardSet(urls, None, "uneven"), out / "run")
        (out / f"summary{env.rank}.json").write_text(json.dumps(summary))


if __name__ == "__main__":
    main(Path(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3]))
