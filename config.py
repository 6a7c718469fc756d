"""BAT OS settings: the single source of configuration.

Precedence: the defaults below < environment variables ``BATOS_<NAME>`` (for
example ``BATOS_ZMQ_ENDPOINT``) < command-line flags where a program offers
them.  ``BATOS_HOME`` is the directory that relative paths resolve against
(the image, its blobs, the metacognition log, update instructions), so several
kernels can run side by side with different homes.

A bad value fails at start with a message naming the variable::

    config: BATOS_METHOD_TIMEOUT_S='soon' is not a number
"""
from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

PROJECT_ROOT = Path(__file__).resolve().parent
PERSONAS = ("ALFRED", "BRICK", "ROBIN", "BABS")
ENV_PREFIX = "BATOS_"


# BATOS_PERSONA_MODELS=seeds: the line-up the seeds name, 4-bit on a CUDA GPU
SEED_PERSONA_MODELS = {
    "ALFRED": "hf:meta-llama/Meta-Llama-3-8B-Instruct",
    "BRICK": "hf:codellama/CodeLlama-7b-Instruct-hf",
    "ROBIN": "hf:mistralai/Mistral-7B-Instruct-v0.2",
    "BABS": "hf:google/gemma-2b-it",
}
CPU_DTYPES = ("float32", "bfloat16", "float16")


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


@dataclasses.dataclass(frozen=True)
class Settings:
    # where the kernel keeps its state; relative paths below resolve against it
    HOME: Path = PROJECT_ROOT / "var"
    # the Living Image
    DB_FILE: Path = Path("live_image.fs")
    BLOB_DIR: Path = Path("live_image.fs.blob")
    # where the image lives (batos/storage.py): unset, the FileStorage above (one kernel);
    # zeo://HOST:PORT or postgresql://USER@HOST:PORT/DB, one image shared by many kernels
    DB_URI: str = ""
    # this kernel's name where the image is shared (its log is metacognition-NAME.jsonl);
    # empty: HOSTNAME-PORT of ZMQ_ENDPOINT
    KERNEL_NAME: str = ""
    # the Synaptic Bridge: loopback or ipc, or any address with CURVE on
    ZMQ_ENDPOINT: str = "tcp://127.0.0.1:5555"
    # CurveZMQ (batos/curve.py): "1" on, "0" off, "" on only for a non-loopback endpoint
    CURVE: str = ""
    # the client's CURVE files: the kernel's public certificate, the client's secret one
    # (empty: BATOS_HOME/curve/server.key and local.key_secret, the kernel's own pair)
    SERVER_KEY: str = ""
    CLIENT_CERT: str = ""
    MAX_MESSAGE_BYTES: int = 1 << 20
    MAX_INFLIGHT_REQUESTS: int = 256     # requests handled at once
    MAX_QUEUED_REQUESTS: int = 4096      # read and waiting for a slot; beyond, the socket is not read
    # the personas' models: {persona: source}; "embedded" is the Qwen2.5-Coder
    # 1.5B GGUF shipped on PyPI, "smollm2" the small SmolLM2-135M GGUF; or a
    # local .gguf file, a local transformers directory, or hf:ORG/NAME[@REV][:FILE].
    # The word "seeds" (not JSON) selects the seeds' four Hub models (SEED_PERSONA_MODELS).
    PERSONA_MODELS: Mapping[str, str] = dataclasses.field(
        default_factory=lambda: {p: "embedded" for p in PERSONAS})
    DEFAULT_PERSONA_MODEL: str = "ALFRED"
    LORA_STAGING_DIR: Path = Path("lora_adapters")
    SENTENCE_TRANSFORMER_MODEL: str = "all-MiniLM-L6-v2"
    METACOGNITION_LOG_FILE: Path = Path("metacognition.jsonl")
    UPDATE_INSTRUCTIONS_FILE: Path = Path("update_instructions.json")
    # where the embedded GGUF is assembled from its PyPI parts (shared by all homes)
    MODEL_CACHE_DIR: Path = Path.home() / ".cache" / "batos" / "models"
    MODEL_MEMORY_BUDGET_MB: float = 6000.0   # resident models fit in this; the LRU one is unloaded
    # llama.cpp
    LLM_N_CTX: int = 4096
    LLM_N_THREADS: int = 0          # 0: one per core
    LLM_N_GPU_LAYERS: int = -1      # -1: every layer when the build can offload to a GPU, else 0
    LLM_PREFIX_CACHE_MB: int = 256  # RAM for kept prompt-prefix states per llama.cpp model (0: none)
    # transformers models on the CPU load in this dtype (on CUDA: 4-bit, bitsandbytes)
    TRANSFORMERS_CPU_DTYPE: str = "float32"
    LLM_TEMPERATURE: float = 0.0
    LLM_SEED: int = 1234
    PLAN_MAX_TOKENS: int = 128      # BRICK's research plan
    METHOD_MAX_TOKENS: int = 512    # the synthesized method
    # execution and cycles
    METHOD_TIMEOUT_S: float = 5.0
    CYCLE_TIMEOUT_S: float = 600.0
    CYCLE_RETRIES: int = 1          # a failed attempt is fed back this many times
    CYCLE_CANDIDATES: int = 4       # candidates compared (by agreement) once the first fails an example
    CANDIDATE_TEMPERATURE: float = 0.7   # sampling temperature of those extra candidates
    REPAIR_SAMPLES: int = 0         # repairs sampled next to the greedy one when examples fail
    CODE_SAMPLES: int = 4           # candidates by code completion when the first is doubtful (pure missions)
    PLAN_EXAMPLES: int = 4          # example calls BRICK's plan writes when the Architect gave none (0: none)
    SKILL_MIN_COSINE: float = 0.7   # an installed method is shown as a skill only this similar or more
    CONTEXT_MIN_COSINE: float = 0.3  # a memory chunk is shown (and research planned) only this similar or more
    AUTOTELIC_INTERVAL_S: float = 3600.0   # the self-tuning loop's round, at most this often (0: off)
    AUTOTELIC_IDLE_S: float = 60.0  # ... and only after this long without an Architect request
    AUTOTELIC_PRACTICE: int = 3     # verified missions a proposal is practised on
    AUTOTELIC_MIN_SPEEDUP: float = 0.15    # as many pass: adopted only if this much faster in all (any one left out)
    GENESIS: bool = True            # a new image writes display_yourself in two cycles at its first start
    NESTED_CYCLE_DEPTH: int = 2     # doesNotUnderstand inside methods: how deep methods written for a call may go
    NESTED_CYCLE_BUDGET: int = 4    # ... and how many cognitive cycles one request may start
    CYCLE_WORKERS: int = 1
    CYCLE_QUEUE_MAX: int = 16
    KERNEL_THREADS: int = 8           # threads for commits, installs and reads (not methods)
    MAX_SOURCE_BYTES: int = 20_000
    # the sandbox: installed methods run in worker processes (batos/sandbox)
    SANDBOX_WORKERS: int = 2          # idle sandbox worker processes kept warm
    SANDBOX_MAX_WORKERS: int = 8      # sandbox worker processes running methods at once, at most
    SANDBOX_MEMORY_MB: int = 512      # a worker's address-space limit (RLIMIT_AS)
    SANDBOX_CPU_S: int = 120          # a worker's total CPU seconds (RLIMIT_CPU); it is replaced before
    SANDBOX_MAX_CALLS: int = 2000     # a worker is replaced after serving this many calls
    SANDBOX_START_TIMEOUT_S: float = 20.0   # a new worker must report ready within this
    SANDBOX_KILL_GRACE_S: float = 1.0       # past METHOD_TIMEOUT_S plus this, a worker is killed
    SANDBOX_REQUIRE_SECCOMP: bool = True    # refuse to run methods where the seccomp filter cannot load
    # shutdown ladder (the kernel's side)
    SHUTDOWN_TIMEOUT_S: float = 10.0
    LOG_LEVEL: str = "INFO"
    # the watchdog
    WATCHDOG_PING_INTERVAL_S: float = 0.5
    WATCHDOG_HANG_TIMEOUT_S: float = 5.0      # no pong for this long: the kernel is hung
    WATCHDOG_START_TIMEOUT_S: float = 60.0    # a new kernel must answer ping within this
    WATCHDOG_STABLE_S: float = 10.0           # up this long: the crash streak is forgotten
    WATCHDOG_BACKOFF_MAX_S: float = 30.0      # the cap of the growing restart delay
    STOP_ASK_TIMEOUT_S: float = 10.0          # the ladder: ask (shutdown) -> wait ...
    STOP_TERM_TIMEOUT_S: float = 5.0          # ... SIGTERM -> wait ... SIGKILL
    UPGRADE_POLL_S: float = 1.0
    UPGRADE_STEP_TIMEOUT_S: float = 900.0
    # the client's parser model from the Hub (also read as HF_PARSER_* by the client)
    HF_PARSER_REPO_ID: str = ""
    HF_PARSER_FILENAME: str = ""
    HF_PARSER_REVISION: str = ""
    # the Fractal Memory
    MEMORY_ENABLED: bool = True     # off: no embedder is loaded; the cycle uses no catalog
    MEMORY_CHUNK_WORDS: int = 120
    MEMORY_SEARCH_K: int = 4        # chunks of context a cycle retrieves per query
    MEMORY_IVF_THRESHOLD: int = 20_000   # exact vector search below, IVF cells above

    def path(self, value: Path) -> Path:
        """Resolve a configured path against HOME."""
        return value if value.is_absolute() else self.HOME / value

    @property
    def db_path(self) -> Path:
        return self.path(self.DB_FILE)

    @property
    def blob_path(self) -> Path:
        return self.path(self.BLOB_DIR)

    @property
    def log_path(self) -> Path:
        if self.DB_URI.strip() and not self.DB_URI.strip().lower().startswith("file:") \
                and self.METACOGNITION_LOG_FILE == Settings.METACOGNITION_LOG_FILE:
            # kernels sharing an image (and maybe a home) each keep their own log
            return self.path(Path(f"metacognition-{self.kernel_name}.jsonl"))
        return self.path(self.METACOGNITION_LOG_FILE)

    @property
    def curve_enabled(self) -> bool:
        """CURVE=1, or CURVE unset and an endpoint other machines can reach."""
        return self.CURVE == "1" or (self.CURVE == "" and not is_local_endpoint(self.ZMQ_ENDPOINT))

    @property
    def kernel_name(self) -> str:
        """KERNEL_NAME, else HOSTNAME-PORT of the endpoint (HOSTNAME-NAME for ipc://)."""
        if self.KERNEL_NAME:
            return self.KERNEL_NAME
        import socket
        tail = self.ZMQ_ENDPOINT.rsplit(":", 1)[-1] if self.ZMQ_ENDPOINT.startswith("tcp://") \
            else Path(self.ZMQ_ENDPOINT[len("ipc://"):]).name
        return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{socket.gethostname()}-{tail}")[:64]



def _parse(name: str, raw: str, default: Any) -> Any:
    var = ENV_PREFIX + name
    if isinstance(default, bool):  # before int: bool is an int
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"config: {var}={raw!r} is not a boolean (use 1/0, true/false)")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"config: {var}={raw!r} is not a whole number") from None
    if isinstance(default, float):
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"config: {var}={raw!r} is not a number") from None
    if isinstance(default, Path):
        if not raw.strip():
            raise ConfigError(f"config: {var} is empty; give a path")
        return Path(raw).expanduser()
    if isinstance(default, Mapping):
        if name == "PERSONA_MODELS" and raw.strip().lower() == "seeds":
            return dict(SEED_PERSONA_MODELS)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            hint = ' (or the word "seeds")' if name == "PERSONA_MODELS" else ""
            raise ConfigError(f"config: {var} is not valid JSON ({exc.msg}){hint}") from None
        if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise ConfigError(f"config: {var} must be a JSON object of strings, "
                              'e.g. {"BRICK": "smollm2"}')
        return value
    if name == "CURVE":   # three values: on, off, and unset (on for a non-loopback endpoint)
        low = raw.strip().lower()
        return {"1": "1", "true": "1", "yes": "1", "on": "1",
                "0": "0", "false": "0", "no": "0", "off": "0", "": ""}.get(low, raw)
    return raw


def _check(s: Settings) -> None:
    """Validate values whose type alone does not make them usable."""
    positive = ("MAX_MESSAGE_BYTES", "MAX_INFLIGHT_REQUESTS", "LLM_N_CTX", "PLAN_MAX_TOKENS",
                "METHOD_MAX_TOKENS", "METHOD_TIMEOUT_S", "CYCLE_TIMEOUT_S", "CYCLE_WORKERS",
                "CYCLE_QUEUE_MAX", "CYCLE_CANDIDATES", "NESTED_CYCLE_BUDGET", "KERNEL_THREADS", "SANDBOX_MAX_WORKERS", "MAX_QUEUED_REQUESTS",
                "MAX_SOURCE_BYTES", "SHUTDOWN_TIMEOUT_S",
                "MEMORY_CHUNK_WORDS", "MEMORY_SEARCH_K", "MEMORY_IVF_THRESHOLD", "MODEL_MEMORY_BUDGET_MB",
                "WATCHDOG_PING_INTERVAL_S", "WATCHDOG_HANG_TIMEOUT_S", "WATCHDOG_START_TIMEOUT_S",
                "WATCHDOG_STABLE_S", "WATCHDOG_BACKOFF_MAX_S", "STOP_ASK_TIMEOUT_S",
                "STOP_TERM_TIMEOUT_S", "UPGRADE_POLL_S", "UPGRADE_STEP_TIMEOUT_S",
                "SANDBOX_WORKERS", "SANDBOX_CPU_S", "SANDBOX_MAX_CALLS", "SANDBOX_START_TIMEOUT_S",
                "SANDBOX_KILL_GRACE_S")
    for name in positive:
        if getattr(s, name) <= 0:
            raise ConfigError(f"config: {ENV_PREFIX}{name}={getattr(s, name)!r} must be positive")
    if s.LLM_PREFIX_CACHE_MB < 0:
        raise ConfigError(f"config: {ENV_PREFIX}LLM_PREFIX_CACHE_MB={s.LLM_PREFIX_CACHE_MB!r} must be 0 "
                          "(no kept prefix states) or more")
    if s.LLM_N_GPU_LAYERS < -1:
        raise ConfigError(f"config: {ENV_PREFIX}LLM_N_GPU_LAYERS={s.LLM_N_GPU_LAYERS!r} must be -1 "
                          "(all layers when the build can offload), 0 (CPU only) or a layer count")
    if s.TRANSFORMERS_CPU_DTYPE not in CPU_DTYPES:
        raise ConfigError(f"config: {ENV_PREFIX}TRANSFORMERS_CPU_DTYPE={s.TRANSFORMERS_CPU_DTYPE!r} "
                          f"is not one of {', '.join(CPU_DTYPES)}")
    if not 0 <= s.REPAIR_SAMPLES <= 16:
        raise ConfigError(f"config: {ENV_PREFIX}REPAIR_SAMPLES={s.REPAIR_SAMPLES!r} must be 0 to 16")
    if not 0 <= s.CODE_SAMPLES <= 16:
        raise ConfigError(f"config: {ENV_PREFIX}CODE_SAMPLES={s.CODE_SAMPLES!r} must be 0 to 16")
    if not 0 <= s.PLAN_EXAMPLES <= 4:
        raise ConfigError(f"config: {ENV_PREFIX}PLAN_EXAMPLES={s.PLAN_EXAMPLES!r} must be 0 to 4")
    for name in ("LLM_N_THREADS", "CYCLE_RETRIES"):
        if getattr(s, name) < 0:
            raise ConfigError(f"config: {ENV_PREFIX}{name}={getattr(s, name)!r} must not be negative")
    if s.SANDBOX_MEMORY_MB < 128:
        raise ConfigError(f"config: {ENV_PREFIX}SANDBOX_MEMORY_MB={s.SANDBOX_MEMORY_MB!r} is too small; "
                          "a worker needs at least 128")
    if s.SANDBOX_CPU_S < 2 * (s.METHOD_TIMEOUT_S + s.SANDBOX_KILL_GRACE_S):
        raise ConfigError(f"config: {ENV_PREFIX}SANDBOX_CPU_S={s.SANDBOX_CPU_S!r} must be at least twice "
                          f"METHOD_TIMEOUT_S + SANDBOX_KILL_GRACE_S "
                          f"({2 * (s.METHOD_TIMEOUT_S + s.SANDBOX_KILL_GRACE_S):g})")
    if not 0.0 < s.CANDIDATE_TEMPERATURE <= 2.0:
        raise ConfigError(f"config: {ENV_PREFIX}CANDIDATE_TEMPERATURE={s.CANDIDATE_TEMPERATURE!r} "
                          "must be above 0 and at most 2")
    if not -1.0 <= s.SKILL_MIN_COSINE <= 1.0:
        raise ConfigError(f"config: {ENV_PREFIX}SKILL_MIN_COSINE={s.SKILL_MIN_COSINE!r} must be between -1 and 1")
    if not 0.0 <= s.LLM_TEMPERATURE <= 2.0:
        raise ConfigError(f"config: {ENV_PREFIX}LLM_TEMPERATURE={s.LLM_TEMPERATURE!r} "
                          "must be between 0 and 2")
    if s.CURVE not in ("", "0", "1"):
        raise ConfigError(f"config: {ENV_PREFIX}CURVE={s.CURVE!r} is not 1 or 0 (unset: on for a "
                          "non-loopback endpoint)")
    if s.CURVE == "0" and not is_local_endpoint(s.ZMQ_ENDPOINT):
        _endpoint_host(s.ZMQ_ENDPOINT, ENV_PREFIX + "ZMQ_ENDPOINT")   # a malformed one says so
        raise ConfigError(f"config: {ENV_PREFIX}ZMQ_ENDPOINT={s.ZMQ_ENDPOINT!r} is not a loopback "
                          f"address, and {ENV_PREFIX}CURVE=0: a kernel other machines can reach "
                          f"needs CURVE (unset {ENV_PREFIX}CURVE or set it to 1)")
    check_endpoint(s.ZMQ_ENDPOINT, ENV_PREFIX + "ZMQ_ENDPOINT", remote=s.curve_enabled)
    from batos import storage   # the URI's grammar lives with the storages
    try:
        storage.parse(s.DB_URI, s.HOME, s.DB_FILE, s.BLOB_DIR)
    except storage.StorageURIError as exc:
        raise ConfigError(str(exc)) from None
    if s.KERNEL_NAME and not re.match(r"^[A-Za-z0-9._-]{1,64}$", s.KERNEL_NAME):
        raise ConfigError(f"config: {ENV_PREFIX}KERNEL_NAME={s.KERNEL_NAME!r} may hold only letters, "
                          "digits, '.', '_' and '-' (at most 64)")
    if s.LOG_LEVEL.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(f"config: {ENV_PREFIX}LOG_LEVEL={s.LOG_LEVEL!r} is not one of "
                          "DEBUG, INFO, WARNING, ERROR, CRITICAL")
    unknown = sorted(set(s.PERSONA_MODELS) - set(PERSONAS))
    if unknown:
        raise ConfigError(f"config: {ENV_PREFIX}PERSONA_MODELS names unknown personas {unknown}; "
                          f"the personas are {', '.join(PERSONAS)}")
    for persona, source in s.PERSONA_MODELS.items():
        if not source.strip():
            raise ConfigError(f"config: {ENV_PREFIX}PERSONA_MODELS gives {persona} an empty source")
    if s.DEFAULT_PERSONA_MODEL not in PERSONAS:
        raise ConfigError(f"config: {ENV_PREFIX}DEFAULT_PERSONA_MODEL={s.DEFAULT_PERSONA_MODEL!r} "
                          f"is not one of {', '.join(PERSONAS)}")


def _endpoint_host(endpoint: str, var: str) -> str | None:
    """The host of tcp://HOST:PORT (None for ipc://PATH); ConfigError for anything else."""
    if endpoint.startswith("ipc://") and len(endpoint) > len("ipc://"):
        return None
    m = re.match(r"^tcp://(\[[^\]]+\]|[^:/\[\]]+):(\d+)$", endpoint)
    if not m:
        raise ConfigError(f"config: {var}={endpoint!r} is not tcp://HOST:PORT or ipc://PATH")
    if not 0 < int(m.group(2)) < 65536:
        raise ConfigError(f"config: {var}={endpoint!r} has a port outside 1..65535")
    return m.group(1).strip("[]")


def is_local_endpoint(endpoint: str) -> bool:
    """ipc://, localhost or a loopback address: nothing beyond this machine can connect."""
    try:
        host = _endpoint_host(endpoint, "endpoint")
    except ConfigError:
        return True     # not an endpoint at all: check_endpoint says so
    if host is None or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_endpoint(endpoint: str, var: str, remote: bool = False) -> None:
    """Accept tcp://<loopback>:<port> or ipc://<path>; with ``remote`` (CURVE on for the
    Synaptic Bridge) any tcp://HOST:PORT."""
    _endpoint_host(endpoint, var)
    if not remote and not is_local_endpoint(endpoint):
        raise ConfigError(f"config: {var}={endpoint!r} is not a loopback address; "
                          "BAT OS only listens on 127.0.0.0/8, [::1] or localhost"
                          + (" unless CURVE is on (BATOS_CURVE=1)" if var.endswith("ZMQ_ENDPOINT") else ""))


def load(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build the settings from defaults, the environment, then ``overrides``."""
    env = os.environ if environ is None else environ
    defaults = Settings()
    values: dict[str, Any] = {}
    home_raw = overrides.get("HOME") or env.get(ENV_PREFIX + "HOME")
    home = Path(home_raw).expanduser() if home_raw else defaults.HOME
    for name, value in read_overrides(home).items():
        values[name] = _parse(name, value if isinstance(value, str) else json.dumps(value),
                              getattr(defaults, name))
    for old, new in RENAMED.items():   # the old names still work, with a notice
        raw = env.get(ENV_PREFIX + old)
        if raw is not None:
            for name in new:
                if env.get(ENV_PREFIX + name) is None:
                    values[name] = _parse(name, raw, getattr(defaults, name))
            _notice(f"config: {ENV_PREFIX}{old} is deprecated; it now sets "
                    f"{' and '.join(ENV_PREFIX + n for n in new)}")
    for f in dataclasses.fields(Settings):
        raw = env.get(ENV_PREFIX + f.name)
        if raw is not None:
            values[f.name] = _parse(f.name, raw, getattr(defaults, f.name))
    for name, value in overrides.items():
        if name not in Settings.__dataclass_fields__:
            raise ConfigError(f"config: unknown setting {name!r}")
        if value is not None:
            values[name] = value
    settings = Settings(**values)
    merged = {p: "embedded" for p in PERSONAS}
    merged.update(settings.PERSONA_MODELS)
    settings = dataclasses.replace(settings, HOME=settings.HOME.expanduser().resolve(),
                                   PERSONA_MODELS=merged)
    _check(settings)
    return settings


# {old name -> the settings it sets now}
RENAMED = {"METHOD_WORKERS": ("KERNEL_THREADS", "SANDBOX_MAX_WORKERS")}


def _notice(message: str) -> None:
    import sys
    print(message, file=sys.stderr)


OVERRIDES_FILE = "overrides.json"


def read_overrides(home: Path) -> dict[str, Any]:
    """Settings written by the watchdog's upgrades: {NAME: value} in HOME/overrides.json."""
    path = Path(home) / OVERRIDES_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"config: {path} is not valid JSON ({exc}); fix or remove it") from None
    if not isinstance(data, dict) or not all(k in Settings.__dataclass_fields__ and k != "HOME" for k in data):
        raise ConfigError(f"config: {path} must map setting names to values")
    return data


def write_overrides(home: Path, updates: dict[str, Any]) -> dict[str, Any]:
    """Merge ``updates`` into HOME/overrides.json (atomically); returns the new content."""
    data = read_overrides(home)
    data.update(updates)
    path = Path(home) / OVERRIDES_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)
    return data
