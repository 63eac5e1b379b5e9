"""Errors raised by tmdflow.

Every error names the problem and what to do about it.  Each class has a stable numeric
``exit_code`` (used by the CLI as the process exit status and by later workflow layers to
decide on recovery), in the spirit of aiida-quantumespresso's numbered exit codes.
"""

from __future__ import annotations


class TmdflowError(Exception):
    """Base class.  ``str(err)`` is the full message: problem + remedy."""

    exit_code = 1

    def __init__(self, problem: str, remedy: str = "") -> None:
        self.problem = problem
        self.remedy = remedy
        super().__init__(problem if not remedy else f"{problem}\n  -> {remedy}")


class InputError(TmdflowError):
    """Bad user input (formula, lattice constant, vacuum, preset ...), found before any run."""

    exit_code = 2


class StructureSymmetryError(InputError):
    """A generated or supplied structure does not have the expected space group."""

    exit_code = 3


class ExecutableNotFound(TmdflowError):
    """pw.x, ld1.x, bands.x or the MPI launcher cannot be found."""

    exit_code = 10


class PseudopotentialError(TmdflowError):
    """A pseudopotential is missing, of the wrong kind, or failed validation."""

    exit_code = 20


class CalculationFailed(TmdflowError):
    """An external code ran but failed (non-zero exit, crash, error message in output)."""

    exit_code = 30


class ScfNotConverged(CalculationFailed):
    """pw.x stopped without reaching self-consistency."""

    exit_code = 31


class WalltimeReached(CalculationFailed):
    """pw.x stopped cleanly at max_seconds and wrote a checkpoint: resumable."""

    exit_code = 32


class MaxSecondsTooShort(CalculationFailed):
    """pw.x reached max_seconds before completing a single SCF iteration: resuming under the same
    limit would stop again without progress, so the step is not resumed."""

    exit_code = 34


class PulayStressTooLarge(CalculationFailed):
    """A monolayer relaxation ended with a slab sigma_zz (its basis-set stress error) above
    relax_stress_zz_thr at the highest cut-off the step may try."""

    exit_code = 33


class OutputParseError(TmdflowError):
    """Output files are missing or not in the expected format."""

    exit_code = 40


class AnalysisError(TmdflowError):
    """The band data cannot answer the question asked (e.g. no K point in the k list)."""

    exit_code = 50


class StoreError(TmdflowError):
    """The results database cannot be used."""

    exit_code = 60


class StoreCorrupted(StoreError):
    """The embedded store file (or the LaunchPad) is damaged: restore a backup."""

    exit_code = 61


class StoreBusy(StoreError):
    """Another process holds the embedded store."""

    exit_code = 62


class UnsupportedOutput(OutputParseError):
    """A readable pw.x output of a kind tmdflow does not read: a collinear spin-polarised
    (nspin = 2) band structure, or an XML file older than the QE >= 6.2 'qes' schema."""

    exit_code = 41


class StoreUnreachable(StoreError):
    """No MongoDB server answered within db_timeout_seconds (or it refused the credentials)."""

    exit_code = 60


class StoreConfigError(StoreError):
    """The database URI or the embedded store's path cannot be used as given."""

    exit_code = 60


class StoreWriteFailed(StoreError):
    """Saving the embedded store failed (disk full, read-only, quota): the previous file is intact."""

    exit_code = 60


class DocumentTooLarge(StoreError):
    """A document would exceed MongoDB's 16 MB limit; it was not written."""

    exit_code = 60


class AlreadySubmitted(StoreError):
    """Another process submitted the same workflow key at the same moment (MongoDB)."""

    exit_code = 60


class StepsFizzled(TmdflowError):
    """``tmdflow launch`` ran Fireworks that failed (FIZZLED); ``tmdflow status`` gives each reason."""

    exit_code = 70


class RunInProgress(TmdflowError):
    """A program started in this run directory by another live launcher has not finished (pid file)."""

    exit_code = 71


class QueueError(TmdflowError):
    """The batch system refused a job or could not be asked (sbatch/squeue/qsub/qstat)."""

    exit_code = 72


class BackupInvalid(StoreError):
    """A backup file cannot be restored (not a tmdflow backup, or a document fails its schema):
    nothing was changed."""

    exit_code = 63


class ResultNotFound(InputError):
    """No result with the given id (material, task or band structure) is in the results store."""

    exit_code = 4


class ElkCrashed(CalculationFailed):
    """Elk (elk-lapw) ended without its normal end in INFO.OUT: a signal (segmentation fault), a
    non-zero exit, or killed; nothing it wrote is used."""

    exit_code = 35


class ElkInputRejected(CalculationFailed):
    """Elk stopped with an Error(...) message: it refused elk.in or a species file."""

    exit_code = 36
