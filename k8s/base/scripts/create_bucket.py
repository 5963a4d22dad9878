"""Create the bucket $S3_BUCKET at $AWS_ENDPOINT_URL once the store answers; nothing if it exists.

Run by the minio-create-bucket Job (k8s/base/minio-bucket-job.yaml) from the grokray image,
which has boto3. Credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from the environment.
"""

import os
import time

import boto3
import botocore.exceptions

WAIT_SECONDS = 300


def main() -> None:
    bucket = os.environ["S3_BUCKET"]
    s3 = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        try:
            s3.head_bucket(Bucket=bucket)
            print(f"bucket {bucket} exists", flush=True)
            return
        except botocore.exceptions.ClientError as err:
            if err.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
                raise
            s3.create_bucket(Bucket=bucket)
            print(f"bucket {bucket} created", flush=True)
            return
        except botocore.exceptions.EndpointConnectionError:
            if time.monotonic() > deadline:
                raise SystemExit(f"the S3 endpoint did not answer within {WAIT_SECONDS} s") from None
            print("waiting for the S3 endpoint ...", flush=True)
            time.sleep(5)


if __name__ == "__main__":
    main()
