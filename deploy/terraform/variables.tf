variable "project_id" {
  description = "Google Cloud project that holds everything."
  type        = string
}

variable "region" {
  description = "Region of Cloud Run, Cloud SQL, Memorystore, Artifact Registry and the buckets."
  type        = string
  default     = "europe-west1"
}

variable "name" {
  description = "Prefix of every resource name (several deployments can share a project)."
  type        = string
  default     = "abgate"
}

variable "image_tag" {
  description = "Tag of the gateway and batch images in Artifact Registry (build and push them first)."
  type        = string
}

variable "min_instances" {
  description = "Gateway instances kept warm (2 or more: no cold start on the request path, one per zone)."
  type        = number
  default     = 2
}

variable "max_instances" {
  description = "Upper bound of gateway instances; each holds postgres_pool_max connections (see capacity.md)."
  type        = number
  default     = 20
}

variable "concurrency" {
  description = "Requests in flight per gateway instance (Cloud Run's max_instance_request_concurrency)."
  type        = number
  default     = 40
}

variable "cpu" {
  description = "vCPUs per gateway instance; the event loop uses one, so 1 unless ABGATE_WORKERS > 1."
  type        = string
  default     = "1"
}

variable "memory" {
  description = "Memory per gateway instance: in-process cache, log queue, and /tmp (the spool) all count."
  type        = string
  default     = "1Gi"
}

variable "invoker_members" {
  description = "Who may call the gateway (IAM members with roles/run.invoker), e.g. the calling services' service accounts."
  type        = list(string)
  default     = []
}

variable "ingress" {
  description = "Cloud Run ingress: INGRESS_TRAFFIC_INTERNAL_ONLY (callers in the VPC), INTERNAL_LOAD_BALANCER, or ALL."
  type        = string
  default     = "INGRESS_TRAFFIC_INTERNAL_ONLY"
}

variable "gateway_env" {
  description = "Extra ABGATE_* settings of the gateway (docs/operators.md, Settings), e.g. {ABGATE_LOCAL_CACHE_MB = \"512\"}."
  type        = map(string)
  default     = {}
}

variable "log_id" {
  description = "ABGATE_LOG_ID: the label of every exposure/outcome line, which the Log Router sinks filter on."
  type        = string
  default     = "abgate-events"
}

variable "network_cidr" {
  description = "CIDR of the subnet made for abgate."
  type        = string
  default     = "10.20.0.0/24"
}

variable "connector_cidr" {
  description = "/28 CIDR of the Serverless VPC Access connector."
  type        = string
  default     = "10.20.1.0/28"
}

variable "db_tier" {
  description = "Cloud SQL machine tier (one primary read per cache miss: see capacity.md)."
  type        = string
  default     = "db-custom-2-7680"
}

variable "db_availability" {
  description = "Cloud SQL availability: REGIONAL (a standby in another zone) or ZONAL."
  type        = string
  default     = "REGIONAL"
}

variable "redis_memory_gb" {
  description = "Memorystore capacity: ~270 bytes plus the list's JSON per cached unit (capacity.md)."
  type        = number
  default     = 5
}

variable "redis_read_replicas" {
  description = "Memorystore read replicas (1-5): the gateway reads through ABGATE_REDIS_READ_URL."
  type        = number
  default     = 1
}

variable "archive_retention_days" {
  description = "Days the exposure archive is kept in Cloud Storage before deletion."
  type        = number
  default     = 400
}

variable "batch_args" {
  description = "Arguments of the daily batch job (the abgate command line after `abgate`)."
  type        = list(string)
  default     = ["batch", "predict", "--model", "models:/home_recs@champion", "--input", "/data/features/latest.parquet", "--top-k", "100"]
}

variable "batch_schedule" {
  description = "Cron schedule (UTC) of the batch job; empty: no schedule (run it from Composer: deploy/airflow)."
  type        = string
  default     = ""
}

variable "report_experiments" {
  description = "Experiment keys reported daily by the report job (abgate report KEY --bigquery … --format html)."
  type        = list(string)
  default     = []
}

variable "report_schedule" {
  description = "Cron schedule (UTC) of the daily reports."
  type        = string
  default     = "0 6 * * *"
}

variable "mlflow_tracking_uri" {
  description = "MLFLOW_TRACKING_URI of the batch job (your MLflow server)."
  type        = string
  default     = ""
}
