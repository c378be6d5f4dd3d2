"""attnkit train / generate end to end: the run directory, metrics, resume
and Ctrl-C (bit for bit), seed reproducibility, config files, and the
errors a user meets (bad flags, data files, run directories)."""

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

import attnkit
from attnkit import cli, training
from attnkit.training import ConfigError, TrainConfig, load_run, train

pytestmark = pytest.mark.usefixtures("keep_default_generator")

# A model small enough that a run of a few dozen steps takes a second or two.
TINY = [
    "--n-layer",
    "1",
    "--n-head",
    "2",
    "--n-embd",
    "32",
    "--block-size",
    "16",
    "--batch-size",
    "4",
    "--eval-iters",
    "2",
    "--no-progress",
]
TINY_SETTINGS = dict(n_layer=1, n_head=2, n_embd=32, block_size=16, batch_size=4, eval_iters=2, progress=False)


@pytest.fixture(scope="module")
def small_text(tmp_path_factory):
    """40,000 characters of the bundled corpus as a --data file."""
    path = tmp_path_factory.mktemp("data") / "small.txt"
    path.write_text(attnkit.data.load_text()[:40_000], encoding="utf-8")
    return str(path)


def read_metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def weights(run_dir):
    return {name: np.array(t.numpy()) for name, t in attnkit.load(os.path.join(run_dir, "model.safetensors")).items()}


def optimizer_tensors(run_dir):
    state = attnkit.load(os.path.join(run_dir, "training_state.safetensors"))["optimizer"]["state"]
    return {
        (key, name): np.array(value.numpy())
        for key, entry in state.items()
        for name, value in entry.items()
        if isinstance(value, attnkit.Tensor)
    }


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def losses(records):
    return [(r["step"], r["train_loss"], r["val_loss"], r["lr"]) for r in records]


# ------------------------------------------------------------ end to end ---


def test_train_50_steps_writes_a_run_that_loads_and_generates(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert (
        cli.main(
            [
                "train",
                "--max-iters",
                "50",
                "--eval-interval",
                "25",
                "--warmup-iters",
                "10",
                "--lr",
                "3e-3",
                "--out",
                out,
                *TINY,
            ]
        )
        == 0
    )
    assert {"metrics.jsonl", "model.safetensors", "training_state.safetensors"} <= set(os.listdir(out))
    records = read_metrics(out)
    assert [r["step"] for r in records] == [0, 25, 50]
    for record in records:
        assert {"step", "train_loss", "val_loss", "elapsed_s", "lr", "tokens_per_s"} <= set(record)
    assert records[0]["val_loss"] == pytest.approx(np.log(65), abs=0.1)  # untrained: uniform over 65 chars
    assert records[-1]["val_loss"] < records[0]["val_loss"] - 0.5  # it learns
    assert records[1]["elapsed_s"] <= records[2]["elapsed_s"]
    try:
        import matplotlib  # noqa: F401

        assert os.path.getsize(os.path.join(out, "loss.png")) > 1000
    except ImportError:
        assert "matplotlib is not installed" in capsys.readouterr().err

    model, tokenizer, metadata = load_run(out)
    assert metadata["step"] == 50 and metadata["train"]["max_iters"] == 50
    assert model.config.vocab_size == tokenizer.vocab_size == 65 and model.config.n_embd == 32
    capsys.readouterr()
    assert cli.main(["generate", out, "--prompt", "ROMEO:", "--max-new-tokens", "40", "--seed", "1"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("ROMEO:") and len(text) == len("ROMEO:") + 40 + 1 and text.endswith("\n")
    assert cli.main(["generate", out, "--prompt", "ROMEO:", "--max-new-tokens", "40", "--seed", "1"]) == 0
    assert capsys.readouterr().out == text  # the same seed writes the same text
    assert cli.main(["generate", out, "--prompt", "ROMEO:", "--max-new-tokens", "40", "--temperature", "0"]) == 0
    greedy = capsys.readouterr().out
    assert (
        cli.main(["generate", out, "--prompt", "ROMEO:", "--max-new-tokens", "40", "--top-k", "1", "--seed", "7"]) == 0
    )
    assert capsys.readouterr().out == greedy  # top-k 1 is greedy


def test_train_a_llama_from_scratch(tmp_path, capsys):
    """--arch llama: the same recipe on the Llama family's blocks (RMSNorm,
    rotary positions, SwiGLU, grouped-query attention with --n-kv-head);
    it learns, resumes refuses another arch, and it generates."""
    out = str(tmp_path / "run")
    argv = ["train", "--arch", "llama", "--n-kv-head", "1", "--max-iters", "40", "--eval-interval", "20"]
    assert cli.main([*argv, "--warmup-iters", "5", "--lr", "3e-3", "--out", out, *TINY]) == 0
    records = read_metrics(out)
    assert records[-1]["val_loss"] < records[0]["val_loss"] - 0.5
    model, _, _ = load_run(out)
    config = model.config
    assert (config.norm, config.position, config.mlp, config.n_kv_head, config.bias) == (
        "rmsnorm",
        "rope",
        "swiglu",
        1,
        False,
    )
    assert config.d_ff == 96 and "wpe.weight" not in dict(model.named_parameters())  # 8/3 * 32 to a multiple of 32
    capsys.readouterr()
    assert cli.main(["generate", out, "--prompt", "ROMEO:", "--max-new-tokens", "20", "--temperature", "0"]) == 0
    assert capsys.readouterr().out.startswith("ROMEO:")
    with pytest.raises(ConfigError, match=r"arch \(the run has 'llama', this config 'gpt'\)"):
        train(TrainConfig(out=out, max_iters=60, resume=True, **TINY_SETTINGS))
    with pytest.raises(ConfigError, match="setting 'n_kv_head' expected None unless arch is llama"):
        train(TrainConfig(out=str(tmp_path / "other"), n_kv_head=1, **TINY_SETTINGS))


def test_python_m_attnkit_train_in_a_subprocess(tmp_path, small_text):
    out = str(tmp_path / "run")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "attnkit",
            "train",
            "--max-iters",
            "5",
            "--eval-interval",
            "5",
            "--data",
            small_text,
            "--out",
            out,
            *TINY,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "step 5: train loss" in result.stderr and "attnkit generate" in result.stderr
    assert [r["step"] for r in read_metrics(out)] == [0, 5]


# ------------------------------------------------------ reproducibility ---


def test_the_seed_makes_a_run_reproducible_bit_for_bit(tmp_path, small_text):
    settings = dict(TINY_SETTINGS, data=small_text, max_iters=12, eval_interval=4, dropout=0.1)
    train(TrainConfig(out=str(tmp_path / "a"), **settings))
    train(TrainConfig(out=str(tmp_path / "b"), **settings))
    train(TrainConfig(out=str(tmp_path / "c"), seed=7, **settings))
    assert losses(read_metrics(tmp_path / "a")) == losses(read_metrics(tmp_path / "b"))
    assert_same_weights(weights(tmp_path / "a"), weights(tmp_path / "b"))
    assert losses(read_metrics(tmp_path / "a")) != losses(read_metrics(tmp_path / "c"))


def test_resume_continues_bit_for_bit(tmp_path, small_text):
    # 2N steps at once, against N steps, then --resume for N more, on the
    # same schedule (lr_decay_iters fixed), with dropout so the generator's
    # state matters.
    settings = dict(TINY_SETTINGS, data=small_text, eval_interval=5, dropout=0.1, lr_decay_iters=20, warmup_iters=4)
    whole, split = str(tmp_path / "whole"), str(tmp_path / "split")
    train(TrainConfig(out=whole, max_iters=20, **settings))
    summary = train(TrainConfig(out=split, max_iters=10, **settings))
    assert summary["steps"] == 10
    # The CLI resumes with the run's own settings; only --max-iters changes.
    assert cli.main(["train", "--resume", "--out", split, "--max-iters", "20", "--no-progress"]) == 0
    assert_same_weights(weights(whole), weights(split))
    assert optimizer_tensors(whole).keys() == optimizer_tensors(split).keys()
    assert_same_weights(optimizer_tensors(whole), optimizer_tensors(split))
    assert losses(read_metrics(whole)) == losses(read_metrics(split))


def test_ctrl_c_saves_a_checkpoint_that_resumes_bit_for_bit(tmp_path, small_text):
    settings = dict(TINY_SETTINGS, data=small_text, eval_interval=4, dropout=0.1, max_iters=14)
    whole, interrupted = str(tmp_path / "whole"), str(tmp_path / "interrupted")
    train(TrainConfig(out=whole, **settings))

    def press_ctrl_c(step, loss):
        if step == 6:
            signal.raise_signal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(out=interrupted, **settings), callback=press_ctrl_c)
    assert load_run(interrupted)[2]["step"] == 6  # saved at the end of the step it was pressed in
    assert [r["step"] for r in read_metrics(interrupted)] == [0, 4]
    train(TrainConfig(out=interrupted, resume=True, **settings))
    assert_same_weights(weights(whole), weights(interrupted))
    assert losses(read_metrics(whole)) == losses(read_metrics(interrupted))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back


# ---------------------------------------------------------- config file ---


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_config_file_with_flags_overriding(tmp_path, small_text, suffix):
    path = tmp_path / f"settings{suffix}"
    if suffix == ".toml":
        path.write_text(f'data = "{small_text}"\nmax_iters = 3\neval-interval = 3\nn_embd = 16\nlr = 2e-3\n')
    else:
        path.write_text(json.dumps({"data": small_text, "max_iters": 3, "eval_interval": 3, "n_embd": 16, "lr": 2e-3}))
    out = str(tmp_path / "run")
    assert cli.main(["train", "--config", str(path), "--n-embd", "24", "--out", out, *TINY[:4], *TINY[6:]]) == 0
    saved = load_run(out)[2]["train"]
    assert (saved["max_iters"], saved["eval_interval"], saved["lr"], saved["data"]) == (3, 3, 2e-3, small_text)
    assert saved["n_embd"] == 24  # the flag wins over the file


def test_config_file_errors(tmp_path, capsys):
    bad_key = tmp_path / "bad.json"
    bad_key.write_text('{"max_iter": 3}')
    assert cli.main(["train", "--config", str(bad_key)]) == 2
    assert "unknown setting 'max_iter'; the settings are data," in capsys.readouterr().err
    bad_type = tmp_path / "type.toml"
    bad_type.write_text('max_iters = "many"\n')
    assert cli.main(["train", "--config", str(bad_type)]) == 2
    assert "setting 'max_iters' expected int, got 'many'" in capsys.readouterr().err
    broken = tmp_path / "broken.toml"
    broken.write_text("max_iters = = 3\n")
    assert cli.main(["train", "--config", str(broken)]) == 2
    assert "broken.toml' cannot be read" in capsys.readouterr().err
    assert cli.main(["train", "--config", str(tmp_path / "none.toml")]) == 2
    assert "none.toml' does not exist" in capsys.readouterr().err
    yaml = tmp_path / "settings.yaml"
    yaml.write_text("max_iters: 3\n")
    assert cli.main(["train", "--config", str(yaml)]) == 2
    assert "should end in .toml or .json" in capsys.readouterr().err


# ---------------------------------------------------------------- errors ---


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--max-iters", "many"], "argument --max-iters: expected int, got 'many'"),
        (["train", "--tokenizer", "words"], "argument --tokenizer: invalid choice: 'words'"),
        (["train", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["generate", "out", "--max-new-tokens", "0"], "expected a positive int, got 0"),
        (["teach"], "invalid choice: 'teach'"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_bad_flags_exit_2_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["generate"], "give a run directory (RUN_DIR) or a Hugging Face checkpoint (--model DIR), one of them"),
        (["generate", "out", "--model", "m"], "one of them"),
        (["generate", "out", "--chat"], "--chat and --system are for a chat model's checkpoint (--model DIR)"),
    ],
)
def test_generate_needs_one_model(argv, message, capsys):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--n-head", "3"], "setting 'n_embd' expected a multiple of n_head=3, got 128"),
        (["--min-lr", "0.1"], "setting 'min_lr' expected a number in [0, lr=0.001], got 0.1"),
        (["--block-size", "5000"], "fewer than one window of block_size + 1 = 5001"),
        (["--resume"], "nothing to resume"),
    ],
)
def test_bad_settings_exit_2_with_a_message(argv, message, tmp_path, small_text, capsys):
    assert cli.main(["train", "--data", small_text, "--out", str(tmp_path / "run"), *argv]) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error


def test_cuda_without_cuda_is_a_clear_error(tmp_path, capsys):
    if importlib.util.find_spec("attnkit._cuda") is not None:
        pytest.skip("this attnkit has CUDA")
    assert cli.main(["train", "--device", "cuda", "--out", str(tmp_path / "run")]) == 2
    assert "built without CUDA (cuda: " in capsys.readouterr().err


def test_missing_empty_or_binary_data_file_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["train", "--data", str(tmp_path / "missing.txt")]) == 2
    assert "the data file '" + str(tmp_path / "missing.txt") + "' does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    assert cli.main(["train", "--data", str(empty)]) == 2
    assert "empty.txt' is empty" in capsys.readouterr().err
    binary = tmp_path / "weights.bin"
    binary.write_bytes(bytes(range(128, 256)))
    assert cli.main(["train", "--data", str(binary)]) == 2
    assert "weights.bin' is not UTF-8 text" in capsys.readouterr().err


def test_resume_with_other_model_settings_is_refused(tmp_path, small_text, capsys):
    out = str(tmp_path / "run")
    train(TrainConfig(out=out, data=small_text, max_iters=2, eval_interval=2, **TINY_SETTINGS))
    with pytest.raises(ConfigError, match=r"n_embd \(the run has 32, this config 64\)"):
        train(TrainConfig(out=out, data=small_text, max_iters=4, resume=True, **dict(TINY_SETTINGS, n_embd=64)))


class Crash(BaseException):
    """A simulated crash: nothing after it runs but the cleanup a killed
    process would not do either (save() unlinking a temporary file in the
    staging directory, which is discarded anyway)."""


CHECKPOINT_OPERATIONS = ("mkdir", "rename", "replace", "rmdir", "unlink")


@contextlib.contextmanager
def crash_before_operation(crash_at):
    """Within the block, the crash_at-th file operation (counted from 1) of a
    checkpoint write raises Crash instead of running (0: none does); yields a
    list whose length is the number of operations seen."""
    seen, originals, write = [], {name: getattr(os, name) for name in CHECKPOINT_OPERATIONS}, training._write_checkpoint

    def counted(name):
        def operation(*args, **kwargs):
            seen.append(name)
            if len(seen) == crash_at:
                raise Crash(name)
            return originals[name](*args, **kwargs)

        return operation

    def write_counted(*args):
        for name in CHECKPOINT_OPERATIONS:
            setattr(os, name, counted(name))
        try:
            write(*args)
        finally:
            for name, original in originals.items():
                setattr(os, name, original)

    training._write_checkpoint = write_counted
    try:
        yield seen
    finally:
        training._write_checkpoint = write


# The same with a real SIGKILL, in a child process that resumes a run.
KILLED_WRITER = """
import json, os, signal, sys
import attnkit.training as training

kill_at, settings = int(sys.argv[1]), json.loads(sys.argv[2])
count = 0
write = training._write_checkpoint

def write_killed(*args):
    def counted(operation):
        def wrapper(*a, **k):
            global count
            count += 1
            if count == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return operation(*a, **k)
        return wrapper
    for name in ("mkdir", "rename", "replace", "rmdir", "unlink"):
        setattr(os, name, counted(getattr(os, name)))
    write(*args)

training._write_checkpoint = write_killed
training.train(training.TrainConfig(**settings))
"""


def test_a_run_stopped_at_any_point_of_a_checkpoint_write_resumes(tmp_path, small_text):
    """model.safetensors and training_state.safetensors are replaced as one
    pair: a crash before any file operation of a save leaves the last whole
    pair resumable (the old one before the commit rename, the new one after
    it), and the resumed run ends with the bits of an unbroken one."""
    settings = dict(TINY_SETTINGS, data=small_text, eval_interval=2, dropout=0.1, lr_decay_iters=8, warmup_iters=2)
    whole, base = str(tmp_path / "whole"), str(tmp_path / "base")
    train(TrainConfig(out=whole, max_iters=6, **settings))
    train(TrainConfig(out=base, max_iters=2, **settings))

    def resume_and_compare(out):
        """The step the run resumes from, after checking it ends as the whole run."""
        pending = os.path.isdir(os.path.join(out, ".checkpoint-pending"))
        step = 4 if pending else attnkit.load(os.path.join(out, "training_state.safetensors"))["step"]
        train(TrainConfig(out=out, max_iters=6, resume=True, **settings))
        assert_same_weights(weights(whole), weights(out))
        assert losses(read_metrics(whole)) == losses(read_metrics(out))
        assert not [n for n in os.listdir(out) if n.startswith(".checkpoint")]
        return step

    counting = str(tmp_path / "counting")
    shutil.copytree(base, counting)
    with crash_before_operation(0) as seen:
        train(TrainConfig(out=counting, max_iters=4, resume=True, **settings))
    assert seen == ["mkdir", "replace", "replace", "rename", "replace", "replace", "rmdir"], seen
    resumed_from = []
    for crash_at in range(1, len(seen) + 1):
        out = str(tmp_path / f"crashed{crash_at}")
        shutil.copytree(base, out)
        with pytest.raises(Crash), crash_before_operation(crash_at):
            train(TrainConfig(out=out, max_iters=4, resume=True, **settings))
        resumed_from.append(resume_and_compare(out))
    assert resumed_from == [2, 2, 2, 2, 4, 4, 4]  # the commit is the rename (operation 4)

    # A real SIGKILL between moving the new state and the new weights into place.
    out = str(tmp_path / "killed")
    shutil.copytree(base, out)
    child = dict(settings, out=out, max_iters=4, resume=True)
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, "6", json.dumps(child)], capture_output=True, text=True, timeout=300
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert resume_and_compare(out) == 4


def test_resume_refuses_weights_and_state_of_different_steps(tmp_path, small_text):
    # What two files saved one after the other can leave: the state one step behind the weights.
    out = str(tmp_path / "run")
    train(TrainConfig(out=out, data=small_text, max_iters=2, eval_interval=2, **TINY_SETTINGS))
    state_path = os.path.join(out, "training_state.safetensors")
    state = attnkit.load(state_path, mmap=False)
    attnkit.save(dict(state, step=state["step"] - 1), state_path)
    with pytest.raises(
        ConfigError,
        match="model.safetensors is at step 2 but training_state.safetensors at step 1 \\(not saved as one pair\\)",
    ):
        train(TrainConfig(out=out, data=small_text, max_iters=4, resume=True, **TINY_SETTINGS))


def test_generate_from_a_directory_that_is_not_a_run(tmp_path, capsys):
    assert cli.main(["generate", str(tmp_path / "nowhere")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert cli.main(["generate", str(tmp_path)]) == 2
    assert "is not an attnkit run directory: it has no model.safetensors" in capsys.readouterr().err
    (tmp_path / "model.safetensors").write_bytes(b"not a checkpoint")
    assert cli.main(["generate", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "is not a checkpoint attnkit train wrote" in error and "Traceback" not in error


def test_generate_prompt_outside_the_vocabulary(tmp_path, small_text, capsys):
    out = str(tmp_path / "run")
    train(TrainConfig(out=out, data=small_text, max_iters=1, eval_interval=1, **TINY_SETTINGS))
    capsys.readouterr()
    assert cli.main(["generate", out, "--prompt", "ROMEO: 🙂"]) == 2
    assert "the character '🙂' at position 7 is not in the vocabulary" in capsys.readouterr().err


def test_generation_past_the_block_slides_the_window_as_nanogpt(keep_default_generator):
    # Greedy: each new token is the argmax of a full forward pass over the
    # last block_size tokens at most (nanoGPT's sample.py), also once the
    # text is longer than the block and the cache cannot be kept.
    attnkit.manual_seed(3)
    model = attnkit.models.GPT(
        attnkit.models.GPTConfig(vocab_size=11, block_size=6, n_layer=1, n_head=2, n_embd=8)
    ).eval()
    prompt = np.array([1, 2, 3, 4], np.int64)
    produced = list(cli.stream_text_tokens(model, prompt, 13, temperature=0.0))
    tokens = list(prompt)
    with attnkit.no_grad():
        for _ in range(13):
            window = attnkit.from_numpy(np.array(tokens[-6:], np.int64).reshape(1, -1))
            tokens.append(int(np.argmax(model(window).numpy()[0, -1])))
    assert produced == tokens[4:]
    # A prompt longer than the block keeps its last block_size tokens.
    long_prompt = np.arange(10) % 11
    assert list(cli.stream_text_tokens(model, long_prompt, 2, temperature=0.0)) == list(
        cli.stream_text_tokens(model, long_prompt[-6:], 2, temperature=0.0)
    )


def test_bench_hands_its_arguments_to_attnkit_benchmarks(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "--help"])
    assert exit_info.value.code == 0
    assert "usage: attnkit bench" in capsys.readouterr().out
