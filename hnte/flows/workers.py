"""Several machines on one batch: the review worker flow and its deployment.

``hnte deploy`` registers the ``review-worker`` flow on a Prefect *process* work pool.
Every machine that should help runs ``prefect worker start --pool hnte-review`` with the
same ``HNTE_DATABASE_URL`` (a PostgreSQL database) and ``PREFECT_API_URL`` (a ``prefect
server``). ``hnte batch run BATCH --workers N`` then starts N worker flow runs from that
pool; each claims windows of the open step until the coordinating run closes its plan
(``hnte.services.chunks``). The coordinator works windows too, so a run finishes even if
no worker ever picks its flow runs up.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from hnte.config.settings import get_settings
from hnte.models.db import get_engine
from hnte.services import chunks
from hnte.services.chunks import NeedsPrefectServer

POOL = "hnte-review"
DEPLOYMENT_NAME = "hnte"
DEPLOYMENT = f"review-worker/{DEPLOYMENT_NAME}"


@flow(name="review-worker", flow_run_name="review-worker {plan}", log_prints=True)
def review_worker(plan: str) -> dict[str, Any]:
    """Claim and work windows of the review plan ``plan`` until its coordinator closes it."""
    run_id = flow_run.get_id()
    done = chunks.work_plan(
        get_engine(),
        plan,
        flow_run_id=str(run_id) if run_id else None,
        chunk=get_settings().review_chunk,
    )
    return {"plan": plan, "worker": chunks.worker_name(), "chunks": done}


def require_server() -> str:
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        raise NeedsPrefectServer(
            "多个工作进程需要 Prefect 服务器：请设置 PREFECT_API_URL（见 README“多台机器”）/ "
            "workers need a Prefect server: set PREFECT_API_URL (README, 'Several machines')"
        )
    return str(url)


def deploy(pool: str = POOL, name: str = DEPLOYMENT_NAME) -> str:
    """Create the process work pool if missing and (re)register the worker deployment;
    returns the deployment's id."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.deployments.runner import EntrypointType
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.workers.process import ProcessWorker

    require_server()
    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(
                WorkPoolCreate(
                    name=pool,
                    type="process",
                    base_job_template=ProcessWorker.get_default_base_job_template(),
                    description="hnte 批次审核工作进程 / hnte batch review workers",
                )
            )
        except ObjectAlreadyExists:
            pass
    # ``Flow.deploy`` would also list the pool's workers, a call this server version
    # refuses (422 on an unset limit); registering the deployment is all it is needed for.
    deployment = review_worker.to_deployment(
        name=name,
        work_pool_name=pool,
        # The flow is imported from the installed package on each machine, not pulled.
        entrypoint_type=EntrypointType.MODULE_PATH,
        description="领取并处理批次审核的窗口 / claims and works windows of a batch review",
    )
    deployment_id = deployment.apply(work_pool_name=pool)
    return str(deployment_id)


def launch(plan: str, count: int, batch: str) -> list[str]:
    """Start ``count`` worker flow runs of the plan from the pool; returns their ids."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    require_server()
    ids = []
    for n in range(1, count + 1):
        try:
            run = run_deployment(
                DEPLOYMENT,
                parameters={"plan": plan},
                timeout=0,
                flow_run_name=f"review-worker {batch} #{n}",
            )
        except ObjectNotFound as e:
            raise NeedsPrefectServer(
                f"Prefect 服务器上没有部署 {DEPLOYMENT}：请先运行 hnte deploy / "
                f"no deployment {DEPLOYMENT} on the Prefect server: run `hnte deploy` first"
            ) from e
        ids.append(str(run.id))
    return ids
