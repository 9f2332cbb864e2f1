# cutover's container image: a static-ish release binary on distroless.
#
#   docker build -t cutover:0.1.0 .
#   docker run --rm -p 8080:8080 cutover:0.1.0      # serves /etc/cutover/cutover.yaml
#
# The final image has no shell and no package manager; it runs as uid 65532
# (distroless "nonroot"), numeric so Kubernetes' runAsNonRoot can verify it.
# The admin listener (probes, /metrics, control API) stays on 127.0.0.1 by
# default: bind it elsewhere only with a token, e.g.
#   docker run -e CUTOVER_ADMIN_TOKEN=$(openssl rand -hex 32) -p 9901:9901 ... \
#     cutover:0.1.0 run --config /etc/cutover/cutover.yaml --admin 0.0.0.0:9901
# (the Kubernetes manifests in k8s/ do this with a Secret).

# Debian 12 (bookworm), like the runtime image: same glibc.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
# Cache mounts (BuildKit) keep the registry and target/ between builds; the
# binary is copied out because a cache mount is not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin cutover \
    && cp target/release/cutover /cutover

# The binary links only libc, libm and libgcc_s, which this image has.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /cutover /usr/local/bin/cutover
COPY config/cutover.yaml /etc/cutover/cutover.yaml
COPY config/examples/ /etc/cutover/examples/
USER 65532:65532
# 8080: the data listener of config/cutover.yaml; 9901: the admin listener.
EXPOSE 8080 9901
ENTRYPOINT ["/usr/local/bin/cutover"]
CMD ["run", "--config", "/etc/cutover/cutover.yaml"]
