"""ReasoningDataModule: the built-in reasoning corpus as token batches, with its task for evaluation.

A ``CorpusDataModule`` whose ``corpus()`` is a ``ReasoningCorpus``: seeded step-by-step
arithmetic problems, train, val and test each prepared into shards (so ``test/loss`` is a loss
on the test problems), the question read as context and only the answer trained on by default.
The corpus is of the ``records`` layout: each problem is one sample, from its ``Q:`` to its EOS,
and a batch's rows are right-padded to its longest problem, so an answer is always predicted with
its question in view and no problem attends to another. ``block_size`` is the most a sample
holds: a longer problem is cut to its first ``block_size + 1`` tokens (``setup`` prints how many
are), so it should hold the longest problem trained on (a 5-step one is up to ~500 BPE tokens).
The corpus's ``heldout`` (unseen names, objects, verbs and sentence structures) and ``long``
(6 to 8 steps) splits are never prepared: they are examples of the ``task`` only.
It needs no files and no download. Training problems stream in the generator's order (1-step
problems first when the curriculum is on), so ``shuffle`` defaults to off and the shards are
written by one worker. ``task`` is the ``ReasoningTask`` on the same problems, which ``TaskEval``
scores by exact match; ``sample_prompts`` are the first validation questions. It takes no
``prepared`` corpus: generating needs no files, the same settings find the corpus already
prepared (in a bucket too), and the task must score the problems the shards hold.
"""

from __future__ import annotations

from lightningllm.data.checks import check_choice, check_int
from lightningllm.data.datamodule import CorpusDataModule
from lightningllm.data.sources import DataError
from lightningllm.data.tokenizer import TokenizerKind
from lightningllm.tasks.reasoning.corpus import (
    MAX_STEPS,
    RESTATE_STYLES,
    WORKING_STYLES,
    Curriculum,
    ReasoningCorpus,
    Restate,
    Working,
)
from lightningllm.tasks.reasoning.task import ReasoningTask


class ReasoningDataModule(CorpusDataModule):
    """The built-in corpus: seeded step-by-step arithmetic problems, character-level, read in curriculum order."""

    def __init__(
        self,
        corpus_seed: int = 1234,
        working: Working = "digits",
        restate: Restate = "cue",
        num_train: int = 60_000,
        num_val: int = 300,
        num_test: int = 300,
        num_heldout: int = 300,
        num_long: int = 300,
        step_mix: tuple[float, float, float, float, float] = (1.0, 1.0, 1.0, 1.0, 1.0),
        curriculum: Curriculum = "staged",
        stages: tuple[float, float, float, float] = (0.1, 0.2, 0.3, 0.4),
        distractors: float = 0.3,
        made_up_names: float = 0.0,
        made_up_verbs: float = 0.5,
        made_up_objects: float = 0.5,
        answer_loss_only: bool = True,
        tokenizer_kind: TokenizerKind = "char",
        vocab_size: int = 512,
        tokenizer_path: str | None = None,
        block_size: int = 256,
        batch_size: int = 32,
        num_workers: int = 0,
        shuffle: bool = False,
        seed: int = 42,
        group_by_length: int = 0,
        cache_dir: str = ".cache/lightningllm",
        local_cache_dir: str = ".cache/lightningllm",
        max_cache_size: str | None = None,
        s3_endpoint: str | None = None,
    ):
        """
        Args:
            corpus_seed: seed of the problem generator (same seed, same corpus).
            working: how each step is worked: ``plain``, ``reversed`` or ``digits`` (column by column).
            restate: what the working restates of each step: ``cue`` (``Step 1: 12 more:``) or ``clause``, the
                step's whole clause as the question writes it (``Step 1: She buys 12 more:``).
            num_train: training problems generated.
            num_val: validation problems (validation loss and exact match during training).
            num_test: held-out test problems (``lightningllm test`` reports their loss and exact match).
            num_heldout: problems worded with held-out names, objects, verbs and sentence structures (never
                prepared; the task's ``heldout`` split).
            num_long: 6- to 8-step problems (never prepared; the task's ``long`` split).
            step_mix: relative weights of 1-, 2-, 3-, 4- and 5-step problems.
            curriculum: ``staged`` puts 1-step problems first, then up to 2 steps, and so on; ``none`` mixes.
            stages: fractions of the training stream where 2-, 3-, 4- and then 5-step problems come in.
            distractors: the chance that a question holds a sentence with an irrelevant number.
            made_up_names: the share of problems (not of the ``heldout`` split) whose person has a made-up
                name, new almost every time, so the model learns to copy a name rather than recall it.
            made_up_verbs: the share of steps (not of the ``heldout`` split) worded with a made-up verb, so
                the operation is read from the sentence's structure and cue words, not the verb.
            made_up_objects: the share of problems (not of the ``heldout`` split) counting made-up objects.
            answer_loss_only: train on the answer tokens only; the question is read but not predicted.
            tokenizer_kind: ``char``, or ``bpe`` (digits still one per token; words and templates compress).
            vocab_size: BPE vocabulary size (ignored for ``char``).
            tokenizer_path: use this ``tokenizer.json`` instead of training one (fine-tuning a model on other
                problem settings needs the model's own tokenizer; ``--model.init_from DIR`` fills it in).
            block_size: the most tokens a sample holds: one problem per sample, a longer one cut to its first
                ``block_size + 1`` tokens (set it to hold the longest problem: up to ~500 BPE tokens for 5 steps).
            batch_size: problems per batch (rows right-padded to the longest; the last batch filled up).
            num_workers: loader worker processes.
            shuffle: shuffle training problems (breaks the curriculum order).
            seed: seed of the shuffle.
            group_by_length: each run of this many training steps has its problems sorted by length and
                cut into steps again, in a seeded order (0: off): rows pad less, so more steps a minute.
            cache_dir: where the prepared corpus is cached, in a folder named by a fingerprint of the settings above:
                a local folder, or ``s3://bucket/prefix`` in object storage (prepared locally, uploaded there, then
                streamed from there; see ``s3_endpoint`` for the server and credentials).
            local_cache_dir: with an ``s3://`` ``cache_dir``: the local folder, under ``s3/<bucket>/<prefix>/``,
                of the corpus's small files, the shards streamed from the bucket, and the staging folder of the
                corpus while it is prepared.
            max_cache_size: with an ``s3://`` ``cache_dir``: the most streamed shard data kept in
                ``local_cache_dir``, e.g. ``50GB`` (a corpus larger than that has its shards deleted once read);
                None: litdata's default, 75% of the free disk.
            s3_endpoint: the URL of an S3-compatible server (MinIO, SeaweedFS, R2), e.g. ``http://10.0.0.5:9000``;
                None: ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` or the AWS config, else AWS itself.
                Credentials are never settings: boto3 reads ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY``,
                or ``AWS_PROFILE`` and ``~/.aws``.
        """
        check_int("data.num_train", num_train, 1)
        check_int("data.num_val", num_val, 1)
        check_int("data.num_test", num_test, 0)
        check_int("data.num_heldout", num_heldout, 0)
        check_int("data.num_long", num_long, 0)
        check_choice("data.working", working, WORKING_STYLES)
        check_choice("data.restate", restate, RESTATE_STYLES)
        check_choice("data.curriculum", curriculum, ("none", "staged"))
        if len(step_mix) != MAX_STEPS or min(step_mix) < 0 or sum(step_mix) <= 0:
            raise DataError(f"data.step_mix must be {MAX_STEPS} weights ≥ 0, not all 0 (got {list(step_mix)})")
        if len(stages) != MAX_STEPS - 1 or list(stages) != sorted(stages) or not 0 <= stages[0] <= stages[-1] <= 1:
            raise DataError(
                f"data.stages must be {MAX_STEPS - 1} rising fractions between 0 and 1 (got {list(stages)})"
            )
        shares = {
            "distractors": distractors, "made_up_names": made_up_names, "made_up_verbs": made_up_verbs,
            "made_up_objects": made_up_objects,
        }  # fmt: skip
        for setting, value in shares.items():
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
                raise DataError(f"data.{setting} must be a probability between 0 and 1 (got {value!r})")
        super().__init__(
            tokenizer_kind=tokenizer_kind,
            vocab_size=vocab_size,
            tokenizer_path=tokenizer_path,
            block_size=block_size,
            batch_size=batch_size,
            num_workers=num_workers,
            shuffle=shuffle,
            seed=seed,
            group_by_length=group_by_length,
            cache_dir=cache_dir,
            local_cache_dir=local_cache_dir,
            max_cache_size=max_cache_size,
            s3_endpoint=s3_endpoint,
            prepare_workers=1,  # one worker keeps the curriculum order
        )
        self.save_hyperparameters(logger=False)
        self._corpus = ReasoningCorpus(
            seed=corpus_seed,
            working=working,
            restate=restate,
            num_train=num_train,
            num_val=num_val,
            num_test=num_test,
            num_heldout=num_heldout,
            num_long=num_long,
            step_mix=tuple(step_mix),
            curriculum=curriculum,
            stages=tuple(stages),
            distractors=distractors,
            made_up_names=made_up_names,
            made_up_verbs=made_up_verbs,
            made_up_objects=made_up_objects,
            answer_loss_only=answer_loss_only,
        )
        self._task = ReasoningTask(self._corpus)

    def corpus(self) -> ReasoningCorpus:
        """The problem generator, which is also the ``Corpus`` prepared into shards."""
        return self._corpus

    def data_source(self) -> str:
        return "the generated reasoning corpus"

    def more_data_hint(self, split: str) -> str:
        return f"raise data.num_{split} (now {self._corpus.sizes[split]})"

    @property
    def task(self) -> ReasoningTask:
        """Exact match on the held-out problems of this corpus."""
        return self._task

    def sample_prompts(self, count: int) -> list[str]:
        """The questions of the first ``count`` validation problems."""
        return [problem.prompt for problem in self._corpus.problems("val")[:count]]
