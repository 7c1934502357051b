# Cloud SQL for PostgreSQL: results, aliases, the experiment store. Private IP only; the
# gateway connects through Cloud Run's Cloud SQL volume (a Unix socket, encrypted by the
# connector). abgate creates its schema and migrates at start.
resource "google_sql_database_instance" "main" {
  # checkov:skip=CKV_GCP_79:abgate's suite runs on PostgreSQL 15 (Debian 12's); move to a newer major after running it there.
  name                = "${var.name}-pg"
  database_version    = "POSTGRES_15"
  region              = var.region
  deletion_protection = true
  depends_on          = [google_service_networking_connection.private_services]

  settings {
    tier              = var.db_tier
    availability_type = var.db_availability
    disk_autoresize   = true
    ip_configuration {
      ipv4_enabled    = false
      private_network = google_compute_network.main.id
      # The Cloud SQL connector (Cloud Run's /cloudsql volume) presents client certificates
      # itself: nothing else may connect.
      ssl_mode = "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"
    }
    backup_configuration {
      enabled                        = true
      point_in_time_recovery_enabled = true
      start_time                     = "02:00"
    }
    insights_config {
      query_insights_enabled = true
    }
    # What checkov's CIS checks ask a Postgres instance to log.
    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }
    database_flags {
      name  = "log_connections"
      value = "on"
    }
    database_flags {
      name  = "log_disconnections"
      value = "on"
    }
    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }
    database_flags {
      name  = "log_min_messages"
      value = "error"
    }
    database_flags {
      name  = "log_temp_files"
      value = "0"
    }
    database_flags {
      name  = "log_min_duration_statement"
      value = "-1"
    }
    database_flags {
      name  = "cloudsql.enable_pgaudit"
      value = "on"
    }
    database_flags {
      name  = "log_statement"
      value = "ddl"
    }
    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }
    database_flags {
      name  = "log_hostname"
      value = "on"
    }
    database_flags {
      name  = "log_duration"
      value = "on"
    }
  }
}

resource "google_sql_database" "abgate" {
  name     = "abgate"
  instance = google_sql_database_instance.main.name
}

resource "random_password" "db" {
  length  = 32
  special = false
}

resource "google_sql_user" "abgate" {
  name     = "abgate"
  instance = google_sql_database_instance.main.name
  password = random_password.db.result
}
