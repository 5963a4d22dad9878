#!/bin/bash
# Run once by the postgres image's entrypoint, when it initialises an empty data directory.
# The Optuna study storage gets a database of its own: MLflow and Optuna both keep their schema
# version in a table named alembic_version, so they cannot share one.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -c "CREATE DATABASE optuna OWNER \"$POSTGRES_USER\";"
