"""The viewer's web app: JSON routes over a `Workspace`, plus the static front end.

Routes (every model / circuit is named by its path relative to the artifacts directory):

    GET  /                      the single-page front end (static/index.html)
    GET  /api/artifacts         models and circuits found on disk
    GET  /api/tasks             the task suite (name, description, class names)
    GET  /api/circuit?id=       circuit header + graph (nodes placed in layer bands, edges)
    GET  /api/node?node=&model=|circuit=&task=&n=
                                node panel: snippets, histogram, per-class task activations,
                                direct logit effect
    POST /api/tokens            {model|circuit, node, text} -> per-token activations
    POST /api/intervene         {model|circuit, task, n, interventions, mode} -> task loss and
                                p(candidates) without and with the interventions, in the full
                                model or (mode=circuit) in the circuit alone
    POST /api/steer             {model|circuit, prompt, interventions, tokens} -> two generations
    GET  /api/saes              the SAEs the viewer was started with (`serve --sae`)
    GET  /api/latent?sae=&latent=&model=|circuit=&task=&n=
                                latent page (viewer/latents.py); without model or circuit, the
                                model under the artifacts directory with the SAE's content hash
    GET  /api/latent/search?sae=&q=
                                the SAE's latents whose cached explanation contains q (any
                                case), best detection first: {query, explained, total, hits}
    POST /api/latent/intervene  {sae, latent, op, value, task, n, model?} -> task metrics
    POST /api/latent/steer      {sae, latent, op, value, prompt, tokens, model?} -> generations

A node of /api/circuit's graph, a node panel and a latent page carry `explanation` when the
explain cache has one for the unit (viewer/explanations.py, docs/autointerp.md).

Errors are JSON `{"error": message}`: 400 bad input or a Host header that is not a loopback
name (see `guards`), 403 a path outside the artifacts directory, 404 an unknown model / circuit
/ node, 413 a request body over `guards.MAX_BODY_BYTES`, 422 a malformed request body, 500 a
bug (the message names only the exception type; the details go to the server's log).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from sparsecircuits.config import MAX_SEED
from sparsecircuits.errors import SparseCircuitsError
from sparsecircuits.fileformat import strict_json_value
from sparsecircuits.tasks import all_tasks
from sparsecircuits.viewer.circuit_adapter import ViewedCircuit
from sparsecircuits.viewer.explanations import (
    ExplanationSource,
    attach_to_graph,
    attach_to_panel,
    latent_unit,
    search_latents,
)
from sparsecircuits.viewer.guards import BodyLimit, HostCheck, allowed_hosts
from sparsecircuits.viewer.interventions import needs_means, parse_interventions
from sparsecircuits.viewer.latents import (
    LatentSource,
    latent_intervention,
    latent_panel,
    latent_steer,
)
from sparsecircuits.viewer.node_stats import UnknownNodeError, check_node, text_activations
from sparsecircuits.viewer.panels import circuit_view, intervention_result, node_panel
from sparsecircuits.viewer.steer import MAX_NEW_TOKENS, MAX_TEMPERATURE, steer
from sparsecircuits.viewer.workspace import (
    MAX_TASK_EXAMPLES,
    ModelHandle,
    NotFoundError,
    PathOutsideError,
    Workspace,
    weights_hash,
)

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
MAX_TEXT_CHARS = 20_000
PathRef = Field(default=None, max_length=1000)


# Pydantic's JSON parser already refuses lone surrogates (\ud800), which no tokenizer encodes.
Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = PathRef
    circuit: str | None = PathRef


class TokensBody(_Body):
    node: str = Field(max_length=200)
    text: Text


class InterventionItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    node: str = Field(max_length=200)
    op: str = Field(max_length=20)
    value: float | None = Field(default=None, allow_inf_nan=False)


class InterveneBody(_Body):
    task: str | None = Field(default=None, max_length=1000)
    n: int = Field(default=32, ge=1, le=MAX_TASK_EXAMPLES)
    interventions: list[InterventionItem] = Field(default_factory=list, max_length=64)
    mode: Literal["model", "circuit"] = "model"


class SteerBody(_Body):
    prompt: Text
    interventions: list[InterventionItem] = Field(default_factory=list, max_length=64)
    tokens: int = Field(default=32, ge=1, le=MAX_NEW_TOKENS)
    temperature: float = Field(default=0.0, ge=0.0, le=MAX_TEMPERATURE, allow_inf_nan=False)
    seed: int = Field(default=0, ge=0, le=MAX_SEED)


class _LatentBody(_Body):
    sae: str = Field(max_length=200)
    latent: int
    op: Literal["clamp_max", "clamp", "scale", "ablate"] = "ablate"
    value: float | None = Field(default=None, allow_inf_nan=False)


class LatentInterveneBody(_LatentBody):
    task: str = Field(max_length=1000)
    n: int = Field(default=32, ge=1, le=MAX_TASK_EXAMPLES)


class LatentSteerBody(_LatentBody):
    prompt: Text
    tokens: int = Field(default=32, ge=1, le=MAX_NEW_TOKENS)
    temperature: float = Field(default=0.0, ge=0.0, le=MAX_TEMPERATURE, allow_inf_nan=False)
    seed: int = Field(default=0, ge=0, le=MAX_SEED)


class StrictJSONResponse(JSONResponse):
    """JSON with NaN / inf as null (e.g. the loss of a circuit whose logits overflow): a
    number JSON cannot spell must not turn an answer into a 500."""

    def render(self, content: Any) -> bytes:
        return json.dumps(strict_json_value(content), allow_nan=False,
                          separators=(",", ":")).encode()


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(
    workspace: Workspace, hosts: Iterable[str] = (), latents: LatentSource | None = None,
    explanations: ExplanationSource | None = None,
) -> FastAPI:
    """The FastAPI app serving one artifacts directory (and the SAEs in `latents`), showing the
    units' cached explanations from `explanations` (default: `explain`'s cache).

    It answers requests addressed to a loopback name (127.0.0.1, localhost, [::1]) or to one
    of `hosts` (the name it was started on), whatever the port.
    """
    app = FastAPI(title="sparsecircuits viewer", docs_url=None, redoc_url=None, openapi_url=None,
                  default_response_class=StrictJSONResponse)
    # The last added runs first: the Host check, then the body limit, then FastAPI.
    app.add_middleware(BodyLimit)
    app.add_middleware(HostCheck, hosts=allowed_hosts(hosts))
    ws = workspace
    explained = explanations or ExplanationSource()

    # The most specific class wins (handlers are looked up along the exception's MRO), so
    # every other user error is a 400.
    statuses = {PathOutsideError: 403, NotFoundError: 404, UnknownNodeError: 404,
                SparseCircuitsError: 400}  # fmt: skip

    async def _user_error(_: Request, exc: Exception) -> JSONResponse:
        status = next(code for cls, code in statuses.items() if isinstance(exc, cls))
        return _error(status, str(exc))

    for cls in statuses:
        app.add_exception_handler(cls, _user_error)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return _error(422, f"invalid request: {where}: {first.get('msg', 'malformed')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        # The message of an unexpected exception may hold any path: it goes to the log only.
        logger.exception("viewer: internal error")
        return _error(500, f"internal error ({type(exc).__name__}); see the server's log")

    def target(
        model: str | None, circuit: str | None
    ) -> tuple[ModelHandle, ViewedCircuit | None, list[str]]:
        """The model a request is about: the circuit's model, or the named one."""
        if circuit:
            c = ws.circuit(circuit)
            handle, warnings = ws.circuit_model(c)
            return handle, c, warnings
        if model:
            return ws.model(model), None, []
        raise SparseCircuitsError("name a model or a circuit")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/api/artifacts")
    def artifacts() -> dict[str, Any]:
        return ws.listing()

    @app.get("/api/tasks")
    def tasks() -> list[dict[str, Any]]:
        return [
            {"name": t.name, "description": t.description, "class_names": list(t.class_names),
             "source": t.source}
            for t in all_tasks()
        ]

    @app.get("/api/circuit")
    def circuit(
        id: str = Query(max_length=1000),
        n: int = Query(32, ge=1, le=MAX_TASK_EXAMPLES),
    ) -> dict[str, Any]:
        with ws.lock:
            handle, c, warnings = target(None, id)
            view = circuit_view(handle, c, id, n, warnings)
            attach_to_graph(view, explained.table(handle.content_hash))
            return view

    @app.get("/api/node")
    def node(
        node: str = Query(max_length=200),
        model: str | None = Query(None, max_length=1000),
        circuit: str | None = Query(None, max_length=1000),
        task: str | None = Query(None, max_length=1000),
        n: int = Query(32, ge=1, le=MAX_TASK_EXAMPLES),
    ) -> dict[str, Any]:
        with ws.lock:
            handle, c, _ = target(model, circuit)
            check_node(handle.model, node)
            task = ws.task(task) if task else (c.task if c else None)
            panel = node_panel(handle, node, task, n, c)
            attach_to_panel(panel, explained.table(handle.content_hash), node)
            return panel

    @app.post("/api/tokens")
    def tokens(body: TokensBody) -> dict[str, Any]:
        with ws.lock:
            handle, _, _ = target(body.model, body.circuit)
            location, index = check_node(handle.model, body.node)
            return {"node": body.node, **text_activations(handle.loaded, body.text, location,
                                                            index)}

    @app.post("/api/intervene")
    def intervene(body: InterveneBody) -> dict[str, Any]:
        with ws.lock:
            handle, c, _ = target(body.model, body.circuit)
            task = ws.task(body.task) if body.task else (c.task if c else None)
            if not task:
                raise SparseCircuitsError("name a task (or a circuit, whose task is used)")
            ivs = parse_interventions([i.model_dump() for i in body.interventions], handle.model)
            return intervention_result(handle, task, ivs, body.n, c, body.mode)

    @app.post("/api/steer")
    def steer_route(body: SteerBody) -> dict[str, Any]:
        with ws.lock:
            handle, c, _ = target(body.model, body.circuit)
            ivs = parse_interventions([i.model_dump() for i in body.interventions], handle.model)
            means = handle.means(c)[0] if needs_means(ivs) else None
            result = steer(handle.loaded, body.prompt, ivs, body.tokens, body.temperature,
                           None, body.seed, means)
            return {"prompt": result.prompt, "plain": result.plain, "steered": result.steered,
                    "interventions": [iv.to_dict() for iv in ivs]}

    saes = latents or LatentSource()

    def latent_model(sae: str, model: str | None, circuit: str | None) -> ModelHandle:
        """The named model, or the one under the root whose weights the SAE was trained on."""
        if model or circuit:
            return target(model, circuit)[0]
        want = saes.get(sae).meta["model"]["content_hash"]
        for ref, ckpt in ws.scan().models.items():
            if weights_hash(ckpt) == want:
                return ws.model(ref)
        raise NotFoundError(f"no model under the artifacts directory has the weights SAE {sae} "
                            f"was trained on (sha256 {want[:12]})")  # fmt: skip

    @app.get("/api/saes")
    def sae_list() -> list[dict[str, Any]]:
        return saes.listing()

    @app.get("/api/latent")
    def latent(
        sae: str = Query(max_length=200),
        latent: int = Query(),
        model: str | None = Query(None, max_length=1000),
        circuit: str | None = Query(None, max_length=1000),
        task: str | None = Query(None, max_length=1000),
        n: int = Query(32, ge=1, le=MAX_TASK_EXAMPLES),
    ) -> dict[str, Any]:
        with ws.lock:
            handle = latent_model(sae, model, circuit)
            panel = latent_panel(handle, saes, sae, latent, ws.task(task) if task else None, n)
            unit = latent_unit(explained.sae_hash(saes.get(sae)), latent)
            attach_to_panel(panel, explained.table(handle.content_hash), unit)
            return panel

    @app.get("/api/latent/search")
    def latent_search(sae: str = Query(max_length=200), q: str = Query()) -> dict[str, Any]:
        # Only the explain cache is read (no model), so a search need not wait for ws.lock.
        handle = saes.get(sae)
        table = explained.table(handle.meta["model"]["content_hash"])
        found = search_latents(table, explained.sae_hash(handle), handle.sae.d_sae, q)
        return {"sae": sae, **found}

    @app.post("/api/latent/intervene")
    def latent_intervene(body: LatentInterveneBody) -> dict[str, Any]:
        with ws.lock:
            handle = latent_model(body.sae, body.model, body.circuit)
            return latent_intervention(handle, saes, body.sae, body.latent, body.op, body.value,
                                       ws.task(body.task), body.n)  # fmt: skip

    @app.post("/api/latent/steer")
    def latent_steer_route(body: LatentSteerBody) -> dict[str, Any]:
        with ws.lock:
            handle = latent_model(body.sae, body.model, body.circuit)
            return latent_steer(handle, saes, body.sae, body.latent, body.op, body.value,
                                body.prompt, body.tokens, body.temperature, body.seed)

    return app
