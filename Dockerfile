# ngx-gateway on the official nginx image.
#
#   docker build -t ngx-gateway .            # NGINX_VERSION must name an official image tag
#   docker run --rm -p 8080:8080 ngx-gateway
#
# Stage 1 builds the module with scripts/build-for-nginx against the image's own nginx
# binary (same version, same `nginx -V` configure arguments, module signature checked).
# Stage 2 is that same image plus the module and the demo configuration.
ARG NGINX_VERSION=1.28.0

FROM nginx:${NGINX_VERSION} AS nginx

FROM rust:1-bookworm AS build
ARG NGINX_VERSION
RUN apt-get update && apt-get install -y --no-install-recommends \
        libclang-dev libssl-dev libpcre2-dev zlib1g-dev binutils curl \
    && rm -rf /var/lib/apt/lists/*
COPY --from=nginx /usr/sbin/nginx /usr/sbin/nginx
RUN curl -fsSL https://nginx.org/download/nginx-${NGINX_VERSION}.tar.gz | tar -xz -C /usr/src
WORKDIR /src
COPY . .
RUN scripts/build-for-nginx /usr/sbin/nginx --src /usr/src/nginx-${NGINX_VERSION} \
    && cp target/nginx-${NGINX_VERSION}/ngx_http_gateway_module.so /ngx_http_gateway_module.so

FROM nginx:${NGINX_VERSION}
COPY --from=build /ngx_http_gateway_module.so /usr/lib/nginx/modules/
COPY nginx-conf/ /etc/nginx/gateway/
# The demo listens on loopback for scripts/run; in a container it must listen on all addresses.
RUN mkdir -p /etc/nginx/gateway/logs \
    && sed -i 's/listen 127.0.0.1:8080;/listen 8080;/' /etc/nginx/gateway/demo.conf
EXPOSE 8080
CMD ["nginx", "-p", "/etc/nginx/gateway/", "-c", "demo.conf", \
     "-g", "load_module /usr/lib/nginx/modules/ngx_http_gateway_module.so; daemon off;"]
