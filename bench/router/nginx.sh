# nginx_backend_conf DIR LISTEN: the app of the router's benchmarks as nginx
# (sourced by run.sh, syscalls.sh and ab.sh): a worker per core answering 19
# bytes from memory on LISTEN, no access log; pid and error log in DIR.
nginx_backend_conf() {
  cat <<NGINX
worker_processes $(nproc);
pid $1/backend.pid;
error_log $1/backend-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  server {
    listen $2;
    location / { default_type text/plain; return 200 "hello from the app\n"; }
  }
}
NGINX
}
