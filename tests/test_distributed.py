"""Data parallelism in one process: the autograd hook DDP builds on, the
distributed API in a world of one, the per-rank batches, ZeRO's partition and
its state dict. The multi-process tests (mpiexec) are in
test_distributed_mpi.py."""

from __future__ import annotations

import numpy as np
import pytest

import attnkit
import attnkit.distributed as dist
from attnkit import autograd, nn, optim
from attnkit.data import get_batch
from attnkit.nn.parallel import DistributedDataParallel
from attnkit.optim.zero import _partition
from attnkit.random import Generator

# --------------------------------------------- post-accumulate-grad hook ---


def test_hook_runs_once_after_every_contribution():
    """A leaf used three times (twice by one op) gets its hook once, with the
    whole gradient already in .grad."""
    w = attnkit.tensor([1.0, 2.0, 3.0], requires_grad=True)
    seen = []
    w.register_post_accumulate_grad_hook(lambda t: seen.append(np.array(t.grad.detach())))
    x = attnkit.tensor([4.0, 5.0, 6.0])
    loss = (w * w).sum() + (w * x).sum()
    loss.backward()
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0], 2 * np.array([1.0, 2.0, 3.0]) + np.array([4.0, 5.0, 6.0]))


def test_hook_order_follows_backward():
    """Hooks fire as backward finishes each leaf: the last layer's first."""
    first = nn.Linear(3, 3)
    second = nn.Linear(3, 1)
    order = []
    for name, p in [("first", first.weight), ("second", second.weight)]:
        p.register_post_accumulate_grad_hook(lambda t, name=name: order.append(name))
    second(first(attnkit.tensor(np.ones((2, 3), np.float32)))).sum().backward()
    assert order == ["second", "first"]


class _NoGradient(autograd.Function):
    """Passes its input on; sends no gradient back (as a non-differentiable path)."""

    @staticmethod
    def forward(ctx, x):
        return x._array.copy()

    @staticmethod
    def backward(ctx, grad):
        return None


def test_hook_fires_for_a_leaf_whose_gradient_stays_empty():
    """A leaf the graph reaches but no gradient does (its consumer's consumer
    sends none, so its consumer never runs) is final at the end of the pass:
    the hook still runs, once, with no gradient."""
    used = attnkit.tensor([1.0], requires_grad=True)
    idle = attnkit.tensor([2.0], requires_grad=True)
    calls = []
    idle.register_post_accumulate_grad_hook(lambda t: calls.append(t.grad))
    loss = (used * 2.0).sum() + _NoGradient.apply(idle * 3.0).sum()
    loss.backward()
    assert calls == [None]
    assert used.grad.item() == 2.0


def test_hook_on_root_leaf_and_removal():
    w = attnkit.tensor([1.0, 2.0], requires_grad=True)
    calls = []
    handle = w.register_post_accumulate_grad_hook(lambda t: calls.append(1))
    w.backward(attnkit.tensor([1.0, 1.0]))
    assert calls == [1]
    handle.remove()
    (w * 2.0).sum().backward()
    assert calls == [1]


def test_hook_refuses_non_leaves_and_non_callables():
    w = attnkit.tensor([1.0], requires_grad=True)
    with pytest.raises(TypeError, match="register_post_accumulate_grad_hook: argument 'hook'"):
        w.register_post_accumulate_grad_hook(3)
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
        (w * 2.0).register_post_accumulate_grad_hook(print)
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
        attnkit.tensor([1.0]).register_post_accumulate_grad_hook(print)


# ------------------------------------------------------ a world of one ---


def test_world_of_one():
    assert dist.init() == (0, 1)
    assert (dist.get_rank(), dist.get_world_size(), dist.local_world_size()) == (0, 1, 1)
    for dtype in ("float32", "float16", "bfloat16", "int32", "int64", "bool"):
        values = np.array([0, 1, 1, 3], dtype=np.float32) if dtype != "bool" else np.array([0, 1, 1, 0], bool)
        t = attnkit.tensor(values, dtype=dtype)
        before = np.asarray(t).copy()
        dist.all_reduce(t)
        dist.broadcast(t, src=0)
        np.testing.assert_array_equal(np.asarray(t), before)
        gathered = dist.all_gather(t)
        assert gathered.shape == (1, 4) and gathered.dtype == t.dtype
        np.testing.assert_array_equal(np.asarray(gathered)[0], before)
    dist.barrier()


def test_collectives_refuse_bad_arguments():
    dist.init()
    with pytest.raises(TypeError, match="all_reduce: argument 'tensor' expected an attnkit.Tensor"):
        dist.all_reduce(np.zeros(3))
    with pytest.raises(ValueError, match="all_reduce: argument 'op' expected one of sum, mean"):
        dist.all_reduce(attnkit.zeros(3), op="max")
    with pytest.raises(TypeError, match="op 'mean' needs a floating-point tensor"):
        dist.all_reduce(attnkit.zeros(3, dtype="int32"), op="mean")
    with pytest.raises(ValueError, match=r"broadcast: argument 'src' expected a rank in \[0, 1\)"):
        dist.broadcast(attnkit.zeros(3), src=1)
    with pytest.raises(ValueError, match="all_gather: argument 'out' expected a float32 tensor of shape"):
        dist.all_gather(attnkit.zeros(3), out=attnkit.zeros(3))
    with pytest.raises(RuntimeError, match="requires grad and would be changed in place"):
        dist.all_reduce(attnkit.zeros(3, requires_grad=True))
    with pytest.raises(dist.DistributedError, match="init: argument 'timeout'"):
        dist.init(timeout=-1)


def test_timeout_from_the_environment(monkeypatch):
    from attnkit.distributed import world

    monkeypatch.setenv(dist.TIMEOUT_ENV, "12.5")
    assert world._timeout_from_environment() == 12.5
    monkeypatch.setenv(dist.TIMEOUT_ENV, "soon")
    with pytest.raises(dist.DistributedError, match="ATTNKIT_DIST_TIMEOUT expected a positive number"):
        world._timeout_from_environment()


def test_ddp_in_a_world_of_one_is_the_plain_model():
    attnkit.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))
    x = attnkit.tensor(np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32))
    model(x).sum().backward()
    expected = [np.array(p.grad.detach()) for p in model.parameters()]
    model.zero_grad()
    ddp = DistributedDataParallel(model, bucket_mb=1e-6)  # a bucket per parameter
    assert ddp.bucket_sizes == [2, 16, 8, 32]  # the parameters in reverse
    ddp(x).sum().backward()
    for p, grad in zip(model.parameters(), expected):
        np.testing.assert_array_equal(np.asarray(p.grad.detach()), grad)


class _TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.left, self.right = nn.Linear(3, 2), nn.Linear(3, 2)

    def forward(self, x):
        return self.left(x), self.right(x)


class _Stack(nn.Module):
    """Two layers, and between them (in registration order) one the forward does not use."""

    def __init__(self):
        super().__init__()
        self.first = nn.Linear(3, 3)
        self.unused = nn.Linear(3, 3)
        self.second = nn.Linear(3, 2)

    def forward(self, x):
        return self.second(self.first(x))


def test_ddp_names_what_a_backward_left_unaveraged():
    """Averaging forced on over MPI's world of one (its sums are the values
    themselves): a backward that leaves some gradients out, or a gradient
    that comes after its bucket was sent, is an error, not ranks that
    silently diverge."""
    from attnkit.distributed import world

    dist.init()
    if world._world.comm is None:
        pytest.skip("needs mpi4py: the averaging runs through MPI")
    ddp = DistributedDataParallel(_TwoHeads(), bucket_mb=1e-6)
    ddp.world_size = 2
    x = attnkit.tensor(np.ones((4, 3), np.float32))
    left, right = ddp(x)
    left.sum().backward()  # right's parameters never get a gradient
    with pytest.raises(RuntimeError, match="did not average every gradient: the loss did not depend on right.weight"):
        ddp(x)
    # `unused` is not in the forward's graph, so its buckets go out as soon as
    # second's have; a gradient for it then (one the loss brings from outside
    # the forward, while first's buckets are still to come) would be lost.
    model = _Stack()
    ddp = DistributedDataParallel(model, bucket_mb=1e-6)
    ddp.world_size = 2
    ddp(x)
    for p in (model.second.weight, model.second.bias):  # as backward calls the hook
        ddp._gradient_ready(p)
    with pytest.raises(RuntimeError, match="gradient came after its bucket was averaged"):
        ddp._gradient_ready(model.unused.weight)


def test_ddp_refuses_bad_arguments():
    with pytest.raises(TypeError, match="DistributedDataParallel: argument 'module'"):
        DistributedDataParallel(attnkit.zeros(3))
    with pytest.raises(ValueError, match="DistributedDataParallel: argument 'bucket_mb'"):
        DistributedDataParallel(nn.Linear(2, 2), bucket_mb=0)


# --------------------------------------------------------- data per rank ---


@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_ranks_together_draw_the_global_batch(world_size):
    """N ranks of batch b hold exactly the rows one process draws with batch N * b."""
    tokens = np.arange(1000) % 97
    batch = 12
    whole = get_batch(tokens, batch, 8, generator=Generator(5))
    parts = [
        get_batch(tokens, batch, 8, generator=Generator(5), rank=r, world_size=world_size) for r in range(world_size)
    ]
    for i in range(2):
        np.testing.assert_array_equal(np.concatenate([np.asarray(p[i]) for p in parts]), np.asarray(whole[i]))
        assert all(p[i].shape == (batch // world_size, 8) for p in parts)


def test_batch_must_split_evenly():
    with pytest.raises(ValueError, match="get_batch: argument 'batch_size' expected a multiple of world_size=5"):
        get_batch(np.arange(100), 12, 8, world_size=5)
    with pytest.raises(ValueError, match=r"get_batch: argument 'rank' expected an int in \[0, 2\)"):
        get_batch(np.arange(100), 12, 8, rank=2, world_size=2)


# ------------------------------------------------------------------ ZeRO ---


def test_partition_is_balanced():
    sizes = [5000, 10, 300, 4096, 4096, 77, 1, 2048]
    parameters = [attnkit.zeros(n) for n in sizes]
    for world_size in (1, 2, 3, 8, 10):
        owners = _partition(parameters, world_size)
        loads = [sum(n for n, o in zip(sizes, owners) if o == r) for r in range(world_size)]
        assert max(loads) <= sum(sizes) / world_size + max(sizes)
        assert set(owners) <= set(range(world_size))


def test_zero_in_a_world_of_one_is_its_optimizer():
    """Same steps as a plain AdamW, and its (consolidated) state dict loads into one."""

    def run(make_optimizer):
        attnkit.manual_seed(1)
        model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
        optimizer = make_optimizer(optim.weight_decay_groups(model, 0.1))
        x = attnkit.tensor(np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32))
        for _ in range(3):
            optimizer.zero_grad()
            model(x).sum().backward()
            optimizer.step()
        return model, optimizer

    plain_model, plain = run(lambda groups: optim.AdamW(groups, lr=0.1))
    zero_model, zero = run(lambda groups: optim.ZeroRedundancyOptimizer(groups, optim.AdamW, lr=0.1))
    for a, b in zip(plain_model.parameters(), zero_model.parameters()):
        np.testing.assert_array_equal(np.asarray(a.detach()), np.asarray(b.detach()))
    with pytest.raises(RuntimeError, match="consolidate_state_dict"):
        zero.state_dict()
    zero.consolidate_state_dict(to=0)
    saved, expected = zero.state_dict(), plain.state_dict()
    assert saved["param_groups"] == expected["param_groups"]
    assert sorted(saved["state"]) == sorted(expected["state"])
    for index, entry in expected["state"].items():
        assert saved["state"][index]["step"] == entry["step"]
        for key in ("exp_avg", "exp_avg_sq"):
            np.testing.assert_array_equal(np.asarray(saved["state"][index][key]), np.asarray(entry[key]))
    assert zero.local_state_numel() == 2 * sum(p.numel() for p in zero_model.parameters())
    # ... and back: the plain optimizer's state into a fresh ZeRO one.
    in_saved_order = [p for group in optim.weight_decay_groups(zero_model, 0.1) for p in group["params"]]
    fresh = optim.ZeroRedundancyOptimizer(in_saved_order, lr=0.5)
    fresh.load_state_dict(
        {"state": expected["state"], "param_groups": [dict(expected["param_groups"][0], params=list(range(6)))]}
    )
    assert fresh.param_groups[0]["lr"] == 0.1
    assert fresh.optimizer.state[in_saved_order[0]]["step"] == 3


def test_zero_refuses_bad_arguments():
    with pytest.raises(TypeError, match="ZeroRedundancyOptimizer: argument 'optimizer_class'"):
        optim.ZeroRedundancyOptimizer([attnkit.zeros(2, requires_grad=True)], optimizer_class=dict)
    zero = optim.ZeroRedundancyOptimizer([attnkit.zeros(2, requires_grad=True)], lr=0.1)
    with pytest.raises(ValueError, match="the saved parameter groups do not match"):
        zero.load_state_dict({"state": {}, "param_groups": []})


def test_without_mpi4py(monkeypatch):
    """No mpi4py: a world of one whose collectives leave tensors as they are,
    unless an MPI launcher started this process as one of several."""
    from attnkit.distributed import world

    monkeypatch.setattr(world, "_world", world._World())
    monkeypatch.setitem(__import__("sys").modules, "mpi4py", None)  # makes `import mpi4py` fail
    for name in world._LAUNCHER_SIZE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PMI_SIZE", "4")
    with pytest.raises(dist.DistributedError, match="one of 4 that an MPI launcher started.*attnkit\\[mpi\\]"):
        dist.init()
    monkeypatch.setenv("PMI_SIZE", "1")
    assert dist.init() == (0, 1)
    t = attnkit.tensor([1.0, 2.0])
    dist.all_reduce(t, op="mean")
    dist.broadcast(t)
    dist.barrier()
    assert t.tolist() == [1.0, 2.0] and dist.all_gather(t).tolist() == [[1.0, 2.0]]


def test_zero_optimizer_needs_several_ranks(tmp_path):
    from attnkit.training import ConfigError, TrainConfig, train

    with pytest.raises(ConfigError, match="'zero_optimizer' shards the optimizer over MPI ranks"):
        train(TrainConfig(zero_optimizer=True, out=str(tmp_path / "run"), progress=False))
