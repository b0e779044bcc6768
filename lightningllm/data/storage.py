"""Object storage for prepared corpora: a folder ``s3://bucket/prefix``, how litdata streams from it, one-line errors.

``data.cache_dir`` may name a folder in an S3 bucket, on AWS or on an S3-compatible server (MinIO,
SeaweedFS, Cloudflare R2, ...). ``S3Folder`` checks the URI when the data module is built (no
network then) and moves the files of a prepared corpus with boto3, which litdata depends on.
Credentials come from where every AWS tool looks for them: ``AWS_ACCESS_KEY_ID`` and
``AWS_SECRET_ACCESS_KEY`` (or ``AWS_PROFILE`` and the ``~/.aws`` files, or an instance role); the
endpoint from ``data.s3_endpoint`` when it is set, else from ``AWS_ENDPOINT_URL_S3``,
``AWS_ENDPOINT_URL`` or the AWS config (AWS itself when none is). Only the URI and the endpoint are
settings, saved with the run's config: a secret is never held here, printed or saved.

A failure is one ``DataError`` naming the URI and what to check (the server cannot be reached,
the credentials are refused, the bucket does not exist), after at most ``CHECK_ATTEMPTS`` tries
of ``CONNECT_SECONDS`` each: seconds, not the minutes that litdata's own client (1000 adaptive
retries) would take. The client litdata streams shards with (``storage_options``) retries longer,
``STREAM_ATTEMPTS``, since a blip there ends a training run.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lightningllm.data.sources import DataError

CONNECT_SECONDS = 5
CHECK_ATTEMPTS = 3
"""Tries of each request made while preparing and opening a corpus (the first included)."""
STREAM_ATTEMPTS = 10
"""Tries of each request litdata makes while streaming shards."""
UPLOAD_THREADS = 8
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_ACCESS_DENIED = {"AccessDenied", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"}
_ACCESS_DENIED |= {"InvalidToken", "InvalidClientTokenId", "401", "403"}


def is_url(path: str | Path) -> bool:
    """True for ``scheme://...`` (``Path("s3://b/x")`` would quietly be a local folder named ``s3:``)."""
    return "://" in str(path)


class S3Folder:
    """The folder ``s3://bucket/prefix`` (the prefix may be empty) of an S3 or S3-compatible server.

    Args:
        uri: ``s3://bucket`` or ``s3://bucket/some/prefix``.
        endpoint: the server's URL, e.g. ``http://minio.internal:9000``; None: from the AWS environment.
        setting: how errors name the setting that gave ``uri``.

    Raises:
        DataError: when ``uri`` is not an ``s3://`` URI with a valid bucket name.
    """

    def __init__(self, uri: str, endpoint: str | None = None, setting: str = "data.cache_dir"):
        scheme, _, rest = str(uri).partition("://")
        if scheme != "s3":
            raise DataError(f"{setting} {uri}: only s3:// URIs are supported (or a local folder)")
        bucket, _, prefix = rest.partition("/")
        if not _BUCKET.fullmatch(bucket):
            raise DataError(f"{setting} {uri}: {bucket!r} is not a bucket name; write s3://BUCKET/PREFIX")
        if endpoint is not None and not re.match(r"https?://[^/]", endpoint):
            raise DataError(f"data.s3_endpoint must be an http:// or https:// URL (got {endpoint!r})")
        self.bucket = bucket
        self.prefix = "/".join(part for part in prefix.split("/") if part)
        self.endpoint = endpoint
        self.setting = setting
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")

    def url(self, *parts: str) -> str:
        """The URI of ``parts`` (a relative path) inside this folder."""
        return "/".join([self.uri, *parts])

    def key(self, *parts: str) -> str:
        """The object key of ``parts`` inside this folder."""
        return "/".join([p for p in (self.prefix, *parts) if p])

    def local_mirror(self, root: Path) -> Path:
        """Where this folder's files are kept on local disk: ``<root>/s3/<bucket>/<prefix>``."""
        return Path(root, "s3", self.bucket, *self.prefix.split("/"))

    def storage_options(self) -> dict:
        """litdata's ``storage_options`` (boto3 client arguments): the endpoint and retries, no credentials.

        litdata (0.2.76) downloads shards with obstore, whose client it builds without ``allow_http``:
        from an ``http://`` endpoint (a MinIO or SeaweedFS inside a cluster) every download would fail
        with "builder error". For such an endpoint, plain HTTP is allowed in litdata's obstore client
        options, in this process and the loader workers it forks.
        """
        from botocore.config import Config

        retries = {"max_attempts": STREAM_ATTEMPTS, "mode": "standard"}
        options: dict = {"config": Config(connect_timeout=CONNECT_SECONDS, retries=retries)}
        if self.endpoint:
            options["endpoint_url"] = self.endpoint
        if self.resolved_endpoint().startswith("http://"):
            from litdata.streaming import downloader

            obstore_options = getattr(downloader, "_OBSTORE_CLIENT_OPTIONS", None)  # absent where litdata has none
            if isinstance(obstore_options, dict):
                obstore_options["allow_http"] = True
        return options

    def resolved_endpoint(self) -> str:
        """The endpoint requests go to (``data.s3_endpoint``, else what the AWS environment sets)."""
        return self._client().meta.endpoint_url

    def read(self, *parts: str) -> bytes | None:
        """The contents of the object ``parts``, or None when there is none."""
        client = self._client()
        try:
            return client.get_object(Bucket=self.bucket, Key=self.key(*parts))["Body"].read()
        except Exception as err:  # noqa: BLE001 - botocore's errors, worded below
            if _code(err) == "NoSuchKey":
                return None
            raise self._error(err, self.url(*parts), client) from None

    def upload(self, folder: Path, *parts: str, last: str) -> None:
        """Upload every file under ``folder`` to ``parts`` in this folder, the file ``last`` (relative) after
        all others: a reader that finds ``last`` finds everything."""
        files = sorted(path for path in folder.rglob("*") if path.is_file())
        final = folder / last
        client = self._client()

        def put(path: Path) -> None:
            key = self.key(*parts, *path.relative_to(folder).parts)
            try:
                client.upload_file(str(path), self.bucket, key)
            except Exception as err:  # noqa: BLE001 - boto3 wraps the ClientError in S3UploadFailedError
                raise self._error(err.__context__ or err, f"s3://{self.bucket}/{key}", client) from None

        with ThreadPoolExecutor(UPLOAD_THREADS) as pool:
            list(pool.map(put, [path for path in files if path != final]))
        put(final)

    def _client(self):
        """A new client: it reads the credentials and endpoint of the AWS environment as it is now."""
        import boto3
        from botocore.config import Config

        retries = {"max_attempts": CHECK_ATTEMPTS, "mode": "standard"}
        config = Config(connect_timeout=CONNECT_SECONDS, retries=retries)
        return boto3.session.Session().client("s3", endpoint_url=self.endpoint, config=config)

    def _error(self, err: BaseException, url: str, client) -> DataError:
        """``err`` (a botocore error) as one line naming ``url`` and what to check."""
        from botocore.exceptions import ConnectionError, NoCredentialsError, PartialCredentialsError

        endpoint = client.meta.endpoint_url
        code = _code(err)
        if isinstance(err, ConnectionError):
            reason = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(getattr(err, "kwargs", {}).get("error", "")))
            why = reason.group(1).strip().lower() if reason else str(err).split(":")[0].lower()
            return DataError(
                f"cannot reach {url} at {endpoint}: {why}; check data.s3_endpoint (or AWS_ENDPOINT_URL) "
                "and that the server is up"
            )
        if isinstance(err, NoCredentialsError | PartialCredentialsError):
            return DataError(
                f"{url}: no AWS credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
            )
        if code == "NoSuchBucket":
            return DataError(f"{url}: no bucket {self.bucket} at {endpoint}; create it, or fix {self.setting}")
        if code in _ACCESS_DENIED:
            return DataError(
                f"{url}: access denied with these credentials ({code}); check AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), and that they may read and write the bucket"
            )
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return DataError(f"{url} at {endpoint}: {message}")


def _code(err: BaseException) -> str | None:
    """The S3 error code of a botocore ``ClientError`` (``NoSuchKey``, ``AccessDenied``, or the HTTP status)."""
    response = getattr(err, "response", None)
    if not isinstance(response, dict):
        return None
    return str(response.get("Error", {}).get("Code") or response.get("ResponseMetadata", {}).get("HTTPStatusCode"))
