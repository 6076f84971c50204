"""The bucket the registry replicas share, made once on the moto server (docker-compose.test.yml)."""

import boto3

s3 = boto3.client("s3", endpoint_url="http://s3:5000", region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
s3.create_bucket(Bucket="hoist-test")
print("bucket hoist-test ready")
