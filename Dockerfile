# One image for every role of docs/deployment.md: `eobatch serve`, `eobatch migrate`,
# `dask scheduler` and `dask worker`. Workers unpickle the controllers' feature jobs, so they must
# run exactly the same packages: one image guarantees it.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    AWS_EC2_METADATA_DISABLED=true \
    EOBATCH_DATA_DIR=/var/lib/eobatch

WORKDIR /app
# The wheels of rasterio, mini-racer and psycopg bring GDAL, V8 and libpq along.
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --home-dir /var/lib/eobatch --create-home eobatch

USER eobatch
EXPOSE 8000
CMD ["eobatch", "serve", "--host", "0.0.0.0", "--port", "8000"]
