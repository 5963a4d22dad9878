"""Wait until the MLflow tracking server answers and the S3 bucket exists, then exit 0.

The init container of every Ray head (RayJob and RayCluster): the study's driver fails fast when
MLflow does not answer, and each failure of a RayJob costs a whole new RayCluster (backoffLimit),
so the head waits for its services instead. Exits 1 after $GROKRAY_WAIT_SECONDS (default 900).
"""

import os
import time
import urllib.request

import boto3
import botocore.exceptions


def mlflow_ready(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def bucket_ready(bucket: str) -> bool:
    s3 = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)
    try:
        s3.head_bucket(Bucket=bucket)
        return True
    except (botocore.exceptions.ClientError, botocore.exceptions.EndpointConnectionError):
        return False


def main() -> None:
    uri = os.environ["MLFLOW_TRACKING_URI"]
    bucket = os.environ["S3_BUCKET"]
    deadline = time.monotonic() + float(os.environ.get("GROKRAY_WAIT_SECONDS", "900"))
    while True:
        checks = ((uri, mlflow_ready(uri)), (f"s3://{bucket}", bucket_ready(bucket)))
        waiting = [name for name, ok in checks if not ok]
        if not waiting:
            print(f"ready: {uri} and s3://{bucket}", flush=True)
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"not ready in time: {', '.join(waiting)}")
        print(f"waiting for {', '.join(waiting)} ...", flush=True)
        time.sleep(5)


if __name__ == "__main__":
    main()
