# One service account per workload, each with the least it needs, granted on the resource
# itself wherever the API allows (secrets, buckets, dataset, jobs), project-wide otherwise.
resource "google_service_account" "gateway" {
  account_id   = "${var.name}-gateway"
  display_name = "abgate gateway (Cloud Run service)"
}

resource "google_service_account" "batch" {
  account_id   = "${var.name}-batch"
  display_name = "abgate batch and report jobs (Cloud Run Jobs)"
}

resource "google_service_account" "scheduler" {
  account_id   = "${var.name}-scheduler"
  display_name = "abgate Cloud Scheduler: runs the jobs"
}

# Cloud SQL connections (the Cloud Run Cloud SQL volume) and log writing have no
# resource-level grant.
resource "google_project_iam_member" "sql_client" {
  for_each = toset([google_service_account.gateway.email, google_service_account.batch.email])
  project  = var.project_id
  role     = "roles/cloudsql.client"
  member   = "serviceAccount:${each.value}"
}

resource "google_project_iam_member" "log_writer" {
  for_each = toset([google_service_account.gateway.email, google_service_account.batch.email])
  project  = var.project_id
  role     = "roles/logging.logWriter"
  member   = "serviceAccount:${each.value}"
}

resource "google_secret_manager_secret_iam_member" "gateway" {
  for_each  = google_secret_manager_secret.s
  secret_id = each.value.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.gateway.email}"
}

resource "google_secret_manager_secret_iam_member" "batch" {
  for_each  = { for k, v in google_secret_manager_secret.s : k => v if k != "api-tokens" }
  secret_id = each.value.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.batch.email}"
}

# The report job reads the sink's table (and runs its queries) and writes reports.
resource "google_bigquery_dataset_iam_member" "batch_reads_logs" {
  dataset_id = google_bigquery_dataset.logs.dataset_id
  role       = "roles/bigquery.dataViewer"
  member     = "serviceAccount:${google_service_account.batch.email}"
}

resource "google_project_iam_member" "batch_bq_jobs" {
  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = "serviceAccount:${google_service_account.batch.email}"
}

resource "google_storage_bucket_iam_member" "batch_data" {
  bucket = google_storage_bucket.data.name
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${google_service_account.batch.email}"
}

resource "google_storage_bucket_iam_member" "batch_reads_archive" {
  bucket = google_storage_bucket.archive.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.batch.email}"
}

resource "google_cloud_run_v2_job_iam_member" "scheduler_runs_jobs" {
  for_each = merge({ batch = google_cloud_run_v2_job.batch.name },
  { for k, j in google_cloud_run_v2_job.report : "report-${k}" => j.name })
  name     = each.value
  location = var.region
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.scheduler.email}"
}

resource "google_cloud_run_v2_service_iam_member" "invokers" {
  for_each = toset(var.invoker_members)
  name     = google_cloud_run_v2_service.gateway.name
  location = var.region
  role     = "roles/run.invoker"
  member   = each.value
}
