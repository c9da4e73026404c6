# The conventional multi-stage build of the serving image, for machines that
# reach a container registry. Where none is reachable (as on Preflight's own
# CI), `cargo xtask image` assembles the same image FROM scratch from files
# already on the machine; docs/container.md compares the two.
#
#   docker build -t preflight-serve:dev .
#   docker run --rm -p 8080:8080 -v "$PWD/fixtures/models:/models:ro" preflight-serve:dev

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --package preflight-serving --bin preflight-serve
# The pinned ONNX Runtime, from its PyPI wheel (version and sha256 in xtask/src/ort.rs).
RUN apt-get update && apt-get install -y --no-install-recommends python3-pip \
 && cargo xtask ort

FROM debian:bookworm-slim
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin preflight
COPY --from=build /src/target/release/preflight-serve /usr/local/bin/preflight-serve
COPY --from=build /src/target/ort/libonnxruntime.so.1.32.0 /usr/local/lib/libonnxruntime.so
ENV ORT_DYLIB_PATH=/usr/local/lib/libonnxruntime.so
USER 10001:10001
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/preflight-serve"]
CMD ["--models", "/models", "--addr", "0.0.0.0:8080", "--grpc-addr", "0.0.0.0:8081", "--log-format", "json"]
