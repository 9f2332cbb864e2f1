# PLACEHOLDER until the deployment issue (#7): a working multi-stage build,
# not yet hardened (distroless base, non-root user, probes) and not yet
# validated by tests. Build: docker build -t cutover .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
COPY --from=build /src/target/release/cutover /usr/local/bin/cutover
COPY config/cutover.yaml /etc/cutover/cutover.yaml
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/cutover"]
CMD ["run", "-c", "/etc/cutover/cutover.yaml"]
