# Secret Manager holds every credential the services read; Cloud Run maps them to environment
# variables (or a file, for the Redis CA). Terraform writes the versions it can compute (DSN,
# Redis URLs, CA); the API tokens are added out of band, so they never enter the state:
#   printf 'token-a,token-b' | gcloud secrets versions add abgate-api-tokens --data-file=-
locals {
  secrets = {
    postgres-dsn   = "ABGATE_POSTGRES_DSN"
    redis-url      = "ABGATE_REDIS_URL"
    redis-read-url = "ABGATE_REDIS_READ_URL"
    api-tokens     = "ABGATE_API_TOKENS"
    redis-ca       = ""
  }
  secret_values = {
    postgres-dsn = format("postgresql://abgate:%s@/abgate?host=/cloudsql/%s", random_password.db.result,
    google_sql_database_instance.main.connection_name)
    redis-url      = local.redis_url
    redis-read-url = local.redis_read_url
    redis-ca       = join("\n", [for c in google_redis_instance.cache.server_ca_certs : c.cert])
  }
}

resource "google_secret_manager_secret" "s" {
  for_each  = local.secrets
  secret_id = "${var.name}-${each.key}"
  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_version" "v" {
  for_each    = local.secret_values
  secret      = google_secret_manager_secret.s[each.key].id
  secret_data = each.value
}
