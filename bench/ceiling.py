"""The same box's ceiling for bench/intake: a minimal endpoint doing one insert + commit per request."""

from __future__ import annotations

import os
import uuid
from typing import Any

from fastapi import FastAPI, Request
from sqlalchemy import JSON, Column, MetaData, String, Table, create_engine, insert

metadata = MetaData()
rows = Table("ceiling_rows", metadata, Column("id", String(36), primary_key=True), Column("body", JSON))


def create_ceiling_app() -> FastAPI:
    engine = create_engine(os.environ["DRCTL_DATABASE_URL"], pool_size=20, max_overflow=10)
    metadata.create_all(engine)
    app = FastAPI()

    @app.post("/v1/orders", status_code=201)
    def take(body: dict[str, Any], request: Request) -> dict[str, str]:
        row_id = str(uuid.uuid4())
        with engine.begin() as conn:
            conn.execute(insert(rows).values(id=row_id, body=body))
        return {"id": row_id}

    return app
