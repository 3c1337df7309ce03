"""Kubernetes as it is run, rendered here: the pods and Jobs the launchers build (PipesK8sClient's training pod, the
multi-node group, the K8sRunLauncher's run pod and the k8s_job_executor's step pod from infra/helm/values.yaml),
checked against the Kubernetes API schema of the `kubernetes` package, so a typo fails here and not in a cluster;
torchrun started across two "nodes" on loopback with the commands and env those manifests give each pod; the names
values.yaml uses looked up in the code; the Dockerfile's torch builds and pinned extras. No cluster, network or docker.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import tomllib
from pathlib import Path

import dagster as dg
import kubernetes.client
import pytest
import yaml
from dagster._config import process_config
from dagster._core.storage.dagster_run import DagsterRun
from dagster_k8s import K8sRunLauncher, k8s_job_executor
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import UserDefinedDagsterK8sConfig, construct_dagster_k8s_job
from dagster_k8s.pipes import build_pod_body

from assets_defs.chat_assets import RLConfig, SFTConfig
from assets_defs.k8s import multi_node_manifests, rendezvous_name
from assets_defs.launchers import EXECUTORS, LAUNCHERS, RDZV_HOST_ENV, RDZV_PORT, executor, pipes_client
from assets_defs.training_assets import PretrainConfig, TrainingJob

REPO = Path(__file__).resolve().parents[2]
VALUES_TEXT = (REPO / "infra" / "helm" / "values.yaml").read_text()
VALUES = yaml.safe_load(VALUES_TEXT)
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
DEPLOYMENT = VALUES["dagster-user-deployments"]["deployments"][0]
RUN_LAUNCHER = VALUES["runLauncher"]["config"]["k8sRunLauncher"]
RUN_ID = "4f3c2a1b-0d9e-4c8b-a7f6-e5d4c3b2a190"
IMAGE = "ghcr.io/your-org/crawl2chat-gpu:latest"


# --- the schema check -------------------------------------------------------------------------------------------

def k8s_errors(value, kind: str, path: str = "") -> list[str]:
    """Where `value` (a manifest as kubectl reads it: camelCase keys) departs from the Kubernetes model `kind`:
    unknown fields and wrong types, walked through the models' attribute_map and openapi_types. The client's own
    deserializer skips unknown keys without a word (test below), so it cannot catch a typo by itself."""
    if value is None:
        return []
    if kind.startswith("list["):
        if not isinstance(value, list):
            return [f"{path}: a list expected, got {value!r}"]
        return [e for i, item in enumerate(value) for e in k8s_errors(item, kind[5:-1], f"{path}[{i}]")]
    if kind.startswith(("dict(", "dict[")):
        if not isinstance(value, dict):
            return [f"{path}: a mapping expected, got {value!r}"]
        # resources' limits and requests are Quantities: the API takes a number or a string ("8", 8, "16Gi")
        inner = "quantity" if path.endswith((".limits", ".requests")) else kind[5:-1].split(",", 1)[1].strip()
        return [e for key, item in value.items() for e in k8s_errors(item, inner, f"{path}[{key}]")]
    checks = {"str": lambda v: isinstance(v, str), "datetime": lambda v: isinstance(v, str),
              "date": lambda v: isinstance(v, str), "bool": lambda v: isinstance(v, bool), "object": lambda v: True,
              "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
              "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
              "quantity": lambda v: isinstance(v, (str, int, float)) and not isinstance(v, bool)}
    if kind in checks:
        return [] if checks[kind](value) else [f"{path}: {kind} expected, got {value!r}"]
    model = getattr(kubernetes.client, kind)
    if not isinstance(value, dict):
        return [f"{path}: a {kind} (mapping) expected, got {value!r}"]
    attributes = {json_key: attr for attr, json_key in model.attribute_map.items()}
    errors = [f"{path}.{key}: no field {key!r} in {kind}" for key in value if key not in attributes]
    for key, item in value.items():
        if key in attributes:
            errors += k8s_errors(item, model.openapi_types[attributes[key]], f"{path}.{key}")
    return errors


def validated(manifest: dict, kind: str):
    """The manifest as a model of the API (V1Pod, V1Job...), or AssertionError listing every field that is not;
    the models' constructors reject a missing required field (a container without a name)."""
    errors = k8s_errors(manifest, kind)
    assert not errors, f"{kind} does not match the Kubernetes API:\n" + "\n".join(errors)
    return kubernetes.client.ApiClient()._ApiClient__deserialize(manifest, kind)


def as_manifest(model) -> dict:
    """A model built by dagster-k8s as the JSON the API server receives."""
    return kubernetes.client.ApiClient().sanitize_for_serialization(model)


def test_the_schema_check_rejects_what_the_kubernetes_client_lets_through():
    typo = {"name": "train", "image": IMAGE, "resorces": {"limits": {"nvidia.com/gpu": 8}}}
    lenient = kubernetes.client.ApiClient()._ApiClient__deserialize(typo, "V1Container")
    assert lenient.resources is None  # the client drops the misspelled field: it would reach a cluster unnoticed
    assert k8s_errors(typo, "V1Container") == [".resorces: no field 'resorces' in V1Container"]
    with pytest.raises(AssertionError, match="resorces"):
        validated({"containers": [typo]}, "V1PodSpec")
    assert k8s_errors({"name": "x", "ports": [{"containerPort": "29400"}]}, "V1Container") == [
        ".ports[0].containerPort: int expected, got '29400'"]
    assert k8s_errors({"completions": True}, "V1JobSpec") == [".completions: int expected, got True"]
    assert k8s_errors({"hostNetwork": "yes"}, "V1PodSpec") == [".hostNetwork: bool expected, got 'yes'"]
    with pytest.raises(ValueError, match="name"):
        validated({"containers": [{"image": IMAGE}]}, "V1PodSpec")  # a container must have a name
    assert validated({"containers": [{"name": "train", "resources": {"limits": {"nvidia.com/gpu": 8}}}]},
                     "V1PodSpec").containers[0].resources.limits == {"nvidia.com/gpu": "8"}


# --- the training pods (PipesK8sClient) -------------------------------------------------------------------------

def pipes_pod(options: dict, env: dict | None = None, meta: dict | None = None) -> dict:
    """The pod PipesK8sClient.run creates from a stage's pod_options (dagster-k8s's own build_pod_body)."""
    pod = build_pod_body(pod_name="dagster-4f3c2a1b-base-model-0123456789", image=options["image"],
                         command=options["command"], env_vars={"DAGSTER_PIPES_CONTEXT": "e30=", **(env or {})},
                         base_pod_meta=meta, base_pod_spec=options["base_pod_spec"])
    return as_manifest(pod)


def test_a_training_pod_is_a_valid_pod_with_its_gpus_and_the_s3_secret():
    secret = DEPLOYMENT["envSecrets"][0]["name"]
    for config in (PretrainConfig(nproc=8, image=IMAGE), SFTConfig(image=IMAGE), RLConfig(image=IMAGE, nproc=2)):
        options = (config.launch_options("s3://lake/data", "s3://lake/data/checkpoints/base")
                   if isinstance(config, PretrainConfig) else config.pod_options(config.command("s3://lake/data")))
        pod = validated(pipes_pod(options), "V1Pod")
        container = pod.spec.containers[0]
        assert container.image == IMAGE and container.command == options["command"]
        assert container.resources.limits == {"nvidia.com/gpu": str(config.nproc)}
        assert [source.secret_ref.name for source in container.env_from] == [secret]
        assert pod.spec.restart_policy == "Never" and "nnodes" not in options


def test_several_nodes_a_pipes_pod_a_headless_service_and_an_indexed_job_of_workers():
    config = PretrainConfig(nproc=8, nnodes=4, image=IMAGE)
    options = config.launch_options("s3://lake/data", "s3://lake/data/checkpoints/base")
    assert options["nnodes"] == 4
    command = options["command"]
    assert command[1:8] == ["-m", "torch.distributed.run", "--nnodes=4", "--nproc_per_node=8", "--rdzv-backend=static",
                            f"--rdzv-endpoint=$({RDZV_HOST_ENV}):{RDZV_PORT}", "--rdzv-conf=timeout=1800"]
    assert "--standalone" not in command

    name = rendezvous_name(RUN_ID, "base_model")
    group = multi_node_manifests(name, 4, IMAGE, command, options["base_pod_spec"])
    pod = validated(pipes_pod({**options, "base_pod_spec": group["pod"]["base_pod_spec"]}, env=group["pod"]["env"],
                              meta={"labels": group["pod"]["labels"]}), "V1Pod")
    service = validated(group["service"], "V1Service")
    workers = validated(group["workers"], "V1Job")

    # the Service gives node 0 the name the others rendezvous at: it selects that pod, which names it its subdomain
    assert service.spec.cluster_ip == "None" and service.spec.ports[0].port == RDZV_PORT
    assert service.spec.selector.items() <= pod.metadata.labels.items()
    assert (pod.spec.hostname, pod.spec.subdomain) == ("node-0", name)
    node0_env = {e.name: e.value for e in pod.spec.containers[0].env}
    assert node0_env[RDZV_HOST_ENV] == f"node-0.{name}" and node0_env["PET_NODE_RANK"] == "0"

    spec = workers.spec
    assert (spec.completion_mode, spec.completions, spec.parallelism) == ("Indexed", 3, 3)
    worker = spec.template.spec.containers[0]
    assert worker.image == IMAGE and worker.command[-len(command):] == command
    assert worker.resources.limits == pod.spec.containers[0].resources.limits == {"nvidia.com/gpu": "8"}
    assert worker.env_from == pod.spec.containers[0].env_from
    assert {e.name: e.value for e in worker.env}[RDZV_HOST_ENV] == f"node-0.{name}"
    assert spec.template.spec.restart_policy == "Never"
    # Kubernetes leaves a $(NAME) it has no variable for as written: every one must be in that container's env
    for container, env in ((pod.spec.containers[0], node0_env), (worker, {e.name for e in worker.env})):
        for name_used in re.findall(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)", " ".join(container.command)):
            assert name_used in env, f"$({name_used}) is not in {container.name}'s env"

    long = rendezvous_name(RUN_ID, "a_very_long_asset_name_" * 4)
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", long) and len(f"{long}-workers") <= 63
    with pytest.raises(ValueError, match="set image"):
        PretrainConfig(nnodes=2).launch_options("data", "out")


def kubernetes_expand(arg: str, env: dict[str, str]) -> str:
    """Kubernetes' expansion of a container's command: $(NAME) from its env, $$ for $, an unknown $(NAME) kept."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), arg)


def test_torchrun_ranks_the_nodes_as_their_pods_say(tmp_path):
    """Two torchrun agents on loopback, started with what the manifests give node 0 (the Pipes pod) and worker 0 of
    the Indexed Job (JOB_COMPLETION_INDEX=0, which the Job controller sets): node 0 holds global rank 0, the rank
    that reports to Dagster. The rendezvous host is 127.0.0.1 here, the Service's DNS name in a cluster."""
    script = tmp_path / "ranks.py"
    script.write_text("import json, os\nprint('RANKS ' + json.dumps({k: os.environ[k] for k in "
                      "('RANK', 'WORLD_SIZE', 'GROUP_RANK', 'MASTER_ADDR')}), flush=True)\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # a free port in place of 29400, which something else on this machine may hold
    command = [c.replace(f":{RDZV_PORT}", f":{port}") for c in PretrainConfig(nproc=1, nnodes=2).script(
        "unused", "data", {})[:8]] + [str(script)]
    group = multi_node_manifests("c2c-test", 2, IMAGE, command, {"containers": [{"name": "train"}]})
    worker = group["workers"]["spec"]["template"]["spec"]["containers"][0]
    node_env = {**group["pod"]["env"], RDZV_HOST_ENV: "127.0.0.1"}
    worker_env = {**{e["name"]: e["value"] for e in worker["env"]}, RDZV_HOST_ENV: "127.0.0.1",
                  "JOB_COMPLETION_INDEX": "0"}
    base = {k: v for k, v in os.environ.items() if not k.startswith("PET_")}
    procs = [subprocess.Popen([kubernetes_expand(c, env) for c in cmd], env={**base, **env}, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for cmd, env in ((command, node_env), (worker["command"], worker_env))]
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    ranks = [json.loads(re.search(r"RANKS (\{.*\})", out).group(1)) for out in outputs]
    assert ranks == [{"RANK": "0", "WORLD_SIZE": "2", "GROUP_RANK": "0", "MASTER_ADDR": "127.0.0.1"},
                     {"RANK": "1", "WORLD_SIZE": "2", "GROUP_RANK": "1", "MASTER_ADDR": "127.0.0.1"}]


# --- the run and step pods from values.yaml ---------------------------------------------------------------------

RUN_K8S_CONFIG = {"containerConfig": "container_config", "podSpecConfig": "pod_spec_config",
                  "podTemplateSpecMetadata": "pod_template_spec_metadata", "jobSpecConfig": "job_spec_config",
                  "jobMetadata": "job_metadata"}


def run_launcher_config(k8s_run_launcher: dict, kubeconfig: Path) -> dict:
    """dagster.yaml's run_launcher config as the chart writes it from runLauncher.config.k8sRunLauncher (the chart's
    templates/helpers/_run-launcher.tpl), for a release named crawl2chat in namespace dagster."""
    config = {
        "load_incluster_config": False, "kubeconfig_file": str(kubeconfig),  # in the cluster: in-cluster config
        "job_namespace": "dagster", "image_pull_policy": k8s_run_launcher.get("imagePullPolicy", "Always"),
        "service_account_name": "crawl2chat-dagster", "dagster_home": "/opt/dagster/dagster_home",
        "instance_config_map": "crawl2chat-dagster-instance",
        "postgres_password_secret": "crawl2chat-postgresql-secret",
    }
    if "envSecrets" in k8s_run_launcher:
        config["env_secrets"] = [secret["name"] for secret in k8s_run_launcher["envSecrets"]]
    if "envVars" in k8s_run_launcher:
        config["env_vars"] = k8s_run_launcher["envVars"]
    if "runK8sConfig" in k8s_run_launcher:
        config["run_k8s_config"] = {RUN_K8S_CONFIG[key]: value
                                    for key, value in k8s_run_launcher["runK8sConfig"].items()}
    return config


@pytest.fixture
def kubeconfig(tmp_path) -> Path:
    """A kubeconfig naming a cluster nobody serves: K8sRunLauncher loads one when built, and contacts nothing."""
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": "https://127.0.0.1:9"}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
        "users": [{"name": "test", "user": {"token": "unused"}}]}))
    return path


def run_and_step_jobs(k8s_run_launcher: dict, kubeconfig: Path) -> tuple[dict, dict]:
    """The Job K8sRunLauncher creates for a run of ingest_job, and the one k8s_job_executor creates for its
    warc_records step, rendered from the values as dagster-k8s merges them (launcher, then the code location's
    container context: the deployment's env and secrets, then the executor's step config)."""
    checked = process_config(K8sRunLauncher.config_type(), run_launcher_config(k8s_run_launcher, kubeconfig))
    assert checked.success, checked.errors
    launcher = K8sRunLauncher(**checked.value)
    location = K8sContainerContext(env_secrets=[s["name"] for s in DEPLOYMENT["envSecrets"]], env=DEPLOYMENT["env"])
    run = DagsterRun(job_name="ingest_job", run_id=RUN_ID)
    context = K8sContainerContext.create_for_run(run, launcher, include_run_tags=True).merge(location)
    image = f"{DEPLOYMENT['image']['repository']}:{DEPLOYMENT['image']['tag']}"
    run_job = construct_dagster_k8s_job(
        context.get_k8s_job_config(image, launcher), args=["dagster", "api", "execute_run", "{}"],
        job_name=f"dagster-run-{RUN_ID}", component="run_worker", user_defined_k8s_config=context.run_k8s_config)
    executor_config = process_config(k8s_job_executor.config_schema.config_type, {})
    assert executor_config.success, executor_config.errors
    step_context = context.merge(K8sContainerContext(run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(
        executor_config.value.get("step_k8s_config", {}))))
    step_job = construct_dagster_k8s_job(
        step_context.get_k8s_job_config(image, launcher), args=["dagster", "api", "execute_step", "{}"],
        job_name="dagster-step-0123456789abcdef", component="step_worker",
        user_defined_k8s_config=step_context.run_k8s_config)
    return as_manifest(run_job), as_manifest(step_job)


def test_run_and_step_pods_from_the_helm_values_are_valid_jobs(kubeconfig):
    for manifest in run_and_step_jobs(RUN_LAUNCHER, kubeconfig):
        job = validated(manifest, "V1Job")
        container = job.spec.template.spec.containers[0]
        assert container.image == "ghcr.io/your-org/crawl2chat:latest"
        assert container.resources.requests == {"cpu": "2", "memory": "8Gi"}
        assert container.resources.limits == {"memory": "16Gi"}
        assert {s.secret_ref.name for s in container.env_from if s.secret_ref} == {"crawl2chat-aws"}
        env = {e.name: e.value for e in container.env}
        assert env["CRAWL2CHAT_DATA_ROOT"] == "s3://crawl2chat-lake/data" and env["CRAWL2CHAT_PIPES"] == "k8s"


def test_a_typo_in_the_helm_values_fails_here(kubeconfig):
    typo = {**RUN_LAUNCHER, "runK8sConfig": {"containerConfig": {"resorces": {"requests": {"cpu": "2"}}}}}
    with pytest.raises(Exception, match="resorces"):
        run_and_step_jobs(typo, kubeconfig)


# The keys the chart's schema allows where values.yaml sets any (helm/dagster/schema, subschema/run_launcher.py,
# user_deployments.py, concurrency.py, daemon.py: extra keys forbidden), for the sections this file uses.
CHART_KEYS = {
    "deployment": {"name", "image", "dagsterApiGrpcArgs", "codeServerArgs", "includeConfigInLaunchedRuns", "port",
                   "env", "envConfigMaps", "envSecrets", "annotations", "nodeSelector", "affinity", "tolerations",
                   "podSecurityContext", "securityContext", "resources", "livenessProbe", "readinessProbe",
                   "startupProbe", "labels", "volumeMounts", "volumes", "schedulerName"},
    "k8sRunLauncher": {"image", "imagePullPolicy", "jobNamespace", "loadInclusterConfig", "kubeconfigFile",
                       "envConfigMaps", "envSecrets", "envVars", "volumeMounts", "volumes", "labels",
                       "failPodOnRunFailure", "resources", "schedulerName", "securityContext", "runK8sConfig"},
    "runK8sConfig": {"containerConfig", "podSpecConfig", "podTemplateSpecMetadata", "jobSpecConfig", "jobMetadata"},
    "concurrency": {"enabled", "pools", "runs"},
    "pools": {"defaultLimit", "granularity", "opGranularityRunBuffer"},
    "runs": {"maxConcurrentRuns", "tagConcurrencyLimits"},
}


def test_the_helm_values_name_what_exists():
    from assets_defs.definitions import defs

    assert set(DEPLOYMENT) <= CHART_KEYS["deployment"] and set(RUN_LAUNCHER) <= CHART_KEYS["k8sRunLauncher"]
    assert set(RUN_LAUNCHER["runK8sConfig"]) <= CHART_KEYS["runK8sConfig"]
    concurrency = VALUES["concurrency"]
    assert set(concurrency) <= CHART_KEYS["concurrency"] and set(concurrency["pools"]) <= CHART_KEYS["pools"]
    assert set(concurrency["runs"]) <= CHART_KEYS["runs"]
    validated({"name": "x", **{k: DEPLOYMENT[k] for k in ("env", "resources") if k in DEPLOYMENT}}, "V1Container")
    validated({"name": "x", **RUN_LAUNCHER["runK8sConfig"]["containerConfig"]}, "V1Container")

    # the chart names the code location after the deployment; the UI and `crawl2chat ui` call it crawl2chat
    assert DEPLOYMENT["name"] == PYPROJECT["tool"]["dagster"]["code_location_name"] == "crawl2chat"
    assert DEPLOYMENT["dagsterApiGrpcArgs"] == ["-m", PYPROJECT["tool"]["dagster"]["module_name"]]
    # every sensor, job or schedule the file names, comments included, is one the Definitions have
    names = set(re.findall(r"\b[a-z][a-z0-9_]*_(?:sensor|job|schedule)\b", VALUES_TEXT))
    assert {"crawl_sensor", "automation_sensor"} <= names
    known = {s.name for s in defs.sensors or []} | {j.name for j in defs.jobs or []} | {
        s.name for s in defs.schedules or []}
    assert names <= known, f"values.yaml names {sorted(names - known)}, which the Definitions do not have"
    # the environment the deployment sets has values the code accepts; the secret is the one the pods take
    env = {e["name"]: e["value"] for e in DEPLOYMENT["env"]}
    assert env["CRAWL2CHAT_PIPES"] in LAUNCHERS and env["CRAWL2CHAT_EXECUTOR"] in EXECUTORS
    assert pipes_client(env["CRAWL2CHAT_PIPES"]) and executor(env["CRAWL2CHAT_EXECUTOR"])
    secrets = {s["name"] for s in DEPLOYMENT["envSecrets"]} | {s["name"] for s in RUN_LAUNCHER["envSecrets"]}
    assert secrets == set(TrainingJob().env_secrets) == {"crawl2chat-aws"}


def test_every_variable_the_deployment_sets_is_read_where_the_definitions_are_built():
    source = (REPO / "assets_defs" / "definitions.py").read_text()
    for variable in (e["name"] for e in DEPLOYMENT["env"]):
        assert f'dg.EnvVar("{variable}")' in source, f"values.yaml sets {variable}; assets_defs/definitions.py " \
                                                      "does not read it"


def test_the_executor_choice_reaches_the_jobs():
    @dg.asset
    def one() -> int:
        return 1

    for name, chosen in (("multiprocess", dg.multi_or_in_process_executor), ("in_process", dg.in_process_executor),
                         ("k8s", k8s_job_executor)):
        defs = dg.Definitions(assets=[one], jobs=[dg.define_asset_job("one_job", [one])], executor=executor(name))
        assert defs.resolve_job_def("one_job").executor_def is chosen
    with pytest.raises(ValueError, match="expected one of multiprocess, in_process, k8s"):
        executor("celery")


# --- the images -------------------------------------------------------------------------------------------------

def test_one_dockerfile_builds_the_cpu_and_the_cuda_image_with_pinned_extras():
    text = (REPO / "infra" / "Dockerfile").read_text()
    instructions = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert "ARG TORCH_INDEX=cpu" in instructions  # the data-stage image stays CPU unless told otherwise
    torch_pin = next(d for d in PYPROJECT["project"]["dependencies"] if d.startswith("torch=="))
    assert f"RUN pip install --no-cache-dir {torch_pin} --index-url https://download.pytorch.org/whl/${{TORCH_INDEX}}" \
        in instructions
    assert re.search(r"--build-arg TORCH_INDEX=cu12\d\b", text), "the GPU image's build line, a CUDA 12 build"
    install = next(line for line in instructions if line.startswith("RUN pip install") and '".[' in line)
    extras = re.search(r'"\.\[([a-z0-9,]+)\]"', install).group(1).split(",")
    assert set(extras) >= {"k8s", "postgres"}
    # dagster-k8s and dagster-postgres come pinned to the libraries' release of the pinned Dagster (1.x.y: 0.x+16.y)
    major, minor, patch = next(d for d in PYPROJECT["project"]["dependencies"] if d.startswith("dagster==")).split(
        "==")[1].split(".")
    libraries = [r for extra in extras for r in PYPROJECT["project"]["optional-dependencies"][extra]
                 if r.startswith("dagster")]
    assert {r.split("==")[0] for r in libraries} == {"dagster-k8s", "dagster-postgres"}
    assert all(r.endswith(f"==0.{int(minor) + 16}.{patch}") for r in libraries) and major == "1", libraries
    assert not re.search(r"\bdagster-[a-z0-9]+(?![=\w])", install), "no Dagster library installed unpinned"
