"""Airflow DAG for the forecaster's scheduled job: one task per data interval, as of the interval's end.

Copy into Airflow's dags/ folder and set FORECASTER_HOME (the project folder with its .venv) and
FORECASTER_CONFIG. Nothing here is imported by the project: Airflow is not one of its dependencies.
The command is idempotent, so Airflow's retries and backfills (``airflow dags backfill``) are safe:
exit 99 (this as-of is done) marks the task skipped, exit 75 (another run holds the job's lock)
fails it for a retry.
"""

from datetime import datetime, timedelta

from airflow import DAG
from airflow.operators.bash import BashOperator

FORECASTER_HOME = "/srv/forecaster"
FORECASTER_CONFIG = "models/m4_hourly.toml"

# Airflow renders data_interval_end as an ISO timestamp in UTC (2026-11-26T00:00:00+00:00).
COMMAND = 'cd "$FORECASTER_HOME" && .venv/bin/forecaster run "$FORECASTER_CONFIG" --as-of "{{ data_interval_end }}"'

with DAG(
    dag_id="forecaster_m4_hourly",
    schedule="@daily",
    start_date=datetime(2026, 11, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 3, "retry_delay": timedelta(minutes=10)},
) as dag:
    BashOperator(
        task_id="forecast",
        bash_command=COMMAND,
        env={"FORECASTER_HOME": FORECASTER_HOME, "FORECASTER_CONFIG": FORECASTER_CONFIG},
        append_env=True,
        skip_on_exit_code=99,
    )
