# Memorystore for Redis: the results cache. STANDARD_HA with read replicas; the gateway reads
# from the read endpoint (ABGATE_REDIS_READ_URL) and fills the primary (ABGATE_REDIS_URL).
# AUTH and TLS on: the URLs (in Secret Manager) carry the AUTH string, and the server's CA is
# mounted from Secret Manager as a file that the rediss:// URL names.
resource "google_redis_instance" "cache" {
  name                    = "${var.name}-cache"
  tier                    = "STANDARD_HA"
  memory_size_gb          = var.redis_memory_gb
  region                  = var.region
  redis_version           = "REDIS_7_2"
  authorized_network      = google_compute_network.main.id
  connect_mode            = "PRIVATE_SERVICE_ACCESS"
  replica_count           = var.redis_read_replicas
  read_replicas_mode      = "READ_REPLICAS_ENABLED"
  auth_enabled            = true
  transit_encryption_mode = "SERVER_AUTHENTICATION"
  redis_configs = {
    # Cached lists carry a TTL: evict among them first (docs/operators.md, Redis).
    maxmemory-policy = "volatile-lru"
  }
  depends_on = [google_service_networking_connection.private_services]
}

locals {
  redis_ca_path = "/secrets/redis-ca/ca.pem"
  redis_url = format("rediss://:%s@%s:%d/0?ssl_ca_certs=%s", google_redis_instance.cache.auth_string,
  google_redis_instance.cache.host, google_redis_instance.cache.port, local.redis_ca_path)
  redis_read_url = format("rediss://:%s@%s:%d/0?ssl_ca_certs=%s", google_redis_instance.cache.auth_string,
  google_redis_instance.cache.read_endpoint, google_redis_instance.cache.read_endpoint_port, local.redis_ca_path)
}
