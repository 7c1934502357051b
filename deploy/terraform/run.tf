# The gateway: a Cloud Run service running `abgate serve` from the gateway image.
locals {
  gateway_env = merge({
    ABGATE_POSTGRES_SCHEMA   = "abgate"
    ABGATE_POSTGRES_POOL_MAX = "4"
    ABGATE_REDIS_POOL_MAX    = "32"
    ABGATE_LOG_SINK          = "stdout" # JSON lines that Cloud Run's agent turns into entries
    ABGATE_LOG_ID            = var.log_id
    ABGATE_GCP_PROJECT       = var.project_id
    ABGATE_LOG_QUEUE_MAX     = "30000"
    ABGATE_SPOOL_MAX_MB      = "64" # /tmp is memory on Cloud Run: count it in var.memory
  }, var.gateway_env)
  # Secret Manager entries mapped to environment variables (secrets.tf).
  secret_env = { for k, env in local.secrets : env => google_secret_manager_secret.s[k].secret_id if env != "" }
}

resource "google_cloud_run_v2_service" "gateway" {
  name                = "${var.name}-gateway"
  location            = var.region
  ingress             = var.ingress
  deletion_protection = true

  template {
    service_account                  = google_service_account.gateway.email
    execution_environment            = "EXECUTION_ENVIRONMENT_GEN2"
    max_instance_request_concurrency = var.concurrency
    timeout                          = "10s"

    scaling {
      min_instance_count = var.min_instances
      max_instance_count = var.max_instances
    }

    vpc_access {
      connector = google_vpc_access_connector.main.id
      egress    = "PRIVATE_RANGES_ONLY"
    }

    volumes {
      name = "cloudsql"
      cloud_sql_instance {
        instances = [google_sql_database_instance.main.connection_name]
      }
    }

    volumes {
      name = "redis-ca"
      secret {
        secret = google_secret_manager_secret.s["redis-ca"].secret_id
        items {
          version = "latest"
          path    = "ca.pem"
        }
      }
    }

    containers {
      image = "${local.registry}/gateway:${var.image_tag}"
      # PORT is set by Cloud Run (8080) and read by abgate; ABGATE_HOST=0.0.0.0 is in the image.
      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = var.cpu
          memory = var.memory
        }
        cpu_idle          = false # CPU always allocated: the log writer and refreshers run between requests
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = local.gateway_env
        content {
          name  = env.key
          value = env.value
        }
      }

      dynamic "env" {
        for_each = local.secret_env
        content {
          name = env.key
          value_source {
            secret_key_ref {
              secret  = env.value
              version = "latest"
            }
          }
        }
      }

      volume_mounts {
        name       = "cloudsql"
        mount_path = "/cloudsql"
      }

      volume_mounts {
        name       = "redis-ca"
        mount_path = "/secrets/redis-ca"
      }

      # The port opens only once start-up is done (config, aliases, default lists).
      startup_probe {
        http_get {
          path = "/healthz"
        }
        period_seconds    = 1
        timeout_seconds   = 1
        failure_threshold = 60
      }

      # Liveness on /healthz, never /readyz?strict=1: a degraded gateway still answers.
      liveness_probe {
        http_get {
          path = "/healthz"
        }
        period_seconds    = 10
        timeout_seconds   = 2
        failure_threshold = 3
      }
    }
  }

  depends_on = [google_secret_manager_secret_iam_member.gateway, google_project_iam_member.sql_client]
}
