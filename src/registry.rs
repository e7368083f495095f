//! Every component type the binary knows: one line each.
//!
//! To add a component, write its module (config struct, factory, component,
//! tests) in the crate it belongs to and add its factory here.

use otterline_core::registry::Registry;

pub fn registry() -> Registry {
    Registry::default()
        // receivers
        .receiver(otterline_otlp::OtlpReceiverFactory)
        .receiver(otterline_parquet::ParquetReceiverFactory::default())
        .receiver(otterline_hostmetrics::HostMetricsReceiverFactory)
        // processors
        .processor(otterline_processors::AggregateProcessorFactory)
        .processor(otterline_processors::AnomalyProcessorFactory)
        .processor(otterline_processors::BatchProcessorFactory)
        .processor(otterline_processors::CostProcessorFactory)
        .processor(otterline_processors::HealthProcessorFactory)
        .processor(otterline_processors::MemoryLimiterProcessorFactory)
        // exporters
        .exporter(otterline_alert::AlertExporterFactory)
        .exporter(otterline_exporters::DebugExporterFactory)
        .exporter(otterline_exporters::JsonExporterFactory)
        .exporter(otterline_exporters::NopExporterFactory)
        .exporter(otterline_forward::OtlpGrpcExporterFactory::OTLP)
        .exporter(otterline_forward::OtlpGrpcExporterFactory::OTLP_GRPC)
        .exporter(otterline_forward::OtlpHttpExporterFactory::OTLP_HTTP)
        .exporter(otterline_forward::OtlpHttpExporterFactory::OTLPHTTP)
        .exporter(otterline_parquet::ParquetExporterFactory)
        // extensions
        .extension(otterline_dashboard::DashboardFactory)
        .extension(otterline_extensions::HealthCheckFactory)
        .extension(otterline_extensions::CollectorOnlyFactory::PPROF)
        .extension(otterline_extensions::CollectorOnlyFactory::ZPAGES)
        .extension(otterline_extensions::CollectorOnlyFactory::MEMORY_BALLAST)
}
