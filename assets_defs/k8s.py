"""Training on several Kubernetes pods through Pipes (CRAWL2CHAT_PIPES=k8s, a stage's nnodes > 1).

PipesK8sClient runs one pod and reads Dagster's messages from its log. With nnodes > 1 that pod is torchrun's node 0
(global rank 0, the rank that reports); beside it go a headless Service, which gives node 0 the DNS name the others
reach its rendezvous store at, and an Indexed Job of nnodes - 1 worker pods, node ranks 1 to nnodes - 1. Imported
only when the k8s launcher is chosen: it needs dagster-k8s (the k8s extra).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import kubernetes
from dagster_k8s import PipesK8sClient
from dagster_k8s.utils import detect_current_namespace

from assets_defs.launchers import RDZV_HOST_ENV, RDZV_PORT

NODE0 = "node-0"  # node 0's hostname; with the Service as its subdomain its DNS name is node-0.NAME


def rendezvous_name(run_id: str, op_name: str) -> str:
    """The Service's name (a DNS label: lowercase letters, digits and -, a letter first), unique to a run's step;
    short enough that NAME-workers, the worker Job, stays within a label's 63 characters."""
    op = "".join(c if c.isalnum() else "-" for c in op_name.lower())
    return f"c2c-{run_id[:8]}-{op}"[:52].rstrip("-")


def multi_node_manifests(name: str, nnodes: int, image: str, command: Sequence[str], base_pod_spec: Mapping) -> dict:
    """What a step on nnodes pods needs beside PipesK8sClient's own pod: that pod's extra spec, labels and env
    ("pod", arguments of PipesK8sClient.run), the headless Service and the worker Job, as Kubernetes manifests."""
    if nnodes < 2:
        raise ValueError(f"multi_node_manifests is for several nodes, got nnodes={nnodes}")
    labels = {"app.kubernetes.io/part-of": "crawl2chat", "crawl2chat/rendezvous": name}
    host = f"{NODE0}.{name}"
    container, *others = base_pod_spec.get("containers") or [{}]
    worker = {
        **container, "name": container.get("name", "train"), "image": image,
        # a worker's node rank is its index + 1; $$ is Kubernetes' escape for $, so the shell computes $((...))
        "command": ["sh", "-c", 'export PET_NODE_RANK=$$((JOB_COMPLETION_INDEX + 1)) && exec "$@"', "torchrun",
                    *command],
        "env": [*container.get("env", []), {"name": RDZV_HOST_ENV, "value": host}],
    }
    return {
        "pod": {
            "base_pod_spec": {**base_pod_spec, "hostname": NODE0, "subdomain": name},
            "labels": labels,
            "env": {RDZV_HOST_ENV: host, "PET_NODE_RANK": "0"},  # torchrun reads --node-rank from PET_NODE_RANK
        },
        "service": {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": labels},
            # published before the pod is ready: node 0 is looked up while it still waits for the others
            "spec": {"clusterIP": "None", "selector": labels, "publishNotReadyAddresses": True,
                     "ports": [{"name": "rendezvous", "port": RDZV_PORT}]},
        },
        "workers": {
            "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": f"{name}-workers", "labels": labels},
            "spec": {
                "completionMode": "Indexed", "completions": nnodes - 1, "parallelism": nnodes - 1,
                "backoffLimit": 0,  # a lost node fails the group: node 0's collectives fail, and with them the step
                "template": {"metadata": {"labels": labels}, "spec": {
                    **{k: v for k, v in base_pod_spec.items() if k != "containers"},
                    "restartPolicy": "Never", "containers": [worker, *others]}},
            },
        },
    }


class PipesK8sNodesClient(PipesK8sClient):
    """PipesK8sClient, plus `nnodes`: above 1, the Service and worker Job of multi_node_manifests are created before
    the Pipes pod (node 0) and deleted after it, however the step ends."""

    def run(self, *, context, nnodes: int = 1, image: str | None = None, command: Sequence[str] | None = None,
            namespace: str | None = None, env: Mapping[str, str] | None = None,
            base_pod_meta: Mapping | None = None, base_pod_spec: Mapping | None = None, **kwargs):
        if nnodes == 1:
            return super().run(context=context, image=image, command=command, namespace=namespace, env=env,
                               base_pod_meta=base_pod_meta, base_pod_spec=base_pod_spec, **kwargs)
        self._load_k8s_config()
        namespace = namespace or detect_current_namespace(self.kubeconfig_file) or "default"
        name = rendezvous_name(context.run_id, context.op.name)
        group = multi_node_manifests(name, nnodes, image, command, base_pod_spec or {})
        meta = dict(base_pod_meta or {})
        meta["labels"] = {**meta.get("labels", {}), **group["pod"]["labels"]}
        core, batch = kubernetes.client.CoreV1Api(), kubernetes.client.BatchV1Api()
        core.create_namespaced_service(namespace, group["service"])
        try:
            batch.create_namespaced_job(namespace, group["workers"])
            try:
                return super().run(context=context, image=image, command=command, namespace=namespace,
                                   env={**(env or {}), **group["pod"]["env"]}, base_pod_meta=meta,
                                   base_pod_spec=group["pod"]["base_pod_spec"], **kwargs)
            finally:
                batch.delete_namespaced_job(f"{name}-workers", namespace, propagation_policy="Background")
        finally:
            core.delete_namespaced_service(name, namespace)
