//! Maps YAML type names to component factories.
//!
//! The binary builds one [`Registry`] with a line per component type; adding a
//! component is one module plus one line there.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::component::{ComponentKind, ExporterFactory, ExtensionFactory, ProcessorFactory, ReceiverFactory};

#[derive(Default, Clone)]
pub struct Registry {
    pub receivers: BTreeMap<&'static str, Arc<dyn ReceiverFactory>>,
    pub processors: BTreeMap<&'static str, Arc<dyn ProcessorFactory>>,
    pub exporters: BTreeMap<&'static str, Arc<dyn ExporterFactory>>,
    pub extensions: BTreeMap<&'static str, Arc<dyn ExtensionFactory>>,
}

/// One line of `otterline components`.
pub struct Listing {
    pub kind: ComponentKind,
    pub type_name: &'static str,
    pub description: &'static str,
    /// Signals, for receivers and exporters.
    pub signals: Option<String>,
}

impl Registry {
    pub fn receiver(mut self, f: impl ReceiverFactory + 'static) -> Self {
        self.receivers.insert(f.type_name(), Arc::new(f));
        self
    }
    pub fn processor(mut self, f: impl ProcessorFactory + 'static) -> Self {
        self.processors.insert(f.type_name(), Arc::new(f));
        self
    }
    pub fn exporter(mut self, f: impl ExporterFactory + 'static) -> Self {
        self.exporters.insert(f.type_name(), Arc::new(f));
        self
    }
    pub fn extension(mut self, f: impl ExtensionFactory + 'static) -> Self {
        self.extensions.insert(f.type_name(), Arc::new(f));
        self
    }

    /// Known type names of a kind, for "did you mean" style messages.
    pub fn names(&self, kind: ComponentKind) -> Vec<&'static str> {
        match kind {
            ComponentKind::Receiver => self.receivers.keys().copied().collect(),
            ComponentKind::Processor => self.processors.keys().copied().collect(),
            ComponentKind::Exporter => self.exporters.keys().copied().collect(),
            ComponentKind::Extension => self.extensions.keys().copied().collect(),
        }
    }

    pub fn list(&self) -> Vec<Listing> {
        let mut out = Vec::new();
        for f in self.receivers.values() {
            out.push(Listing {
                kind: ComponentKind::Receiver,
                type_name: f.type_name(),
                description: f.description(),
                signals: Some(f.signals().to_string()),
            });
        }
        for f in self.processors.values() {
            out.push(Listing {
                kind: ComponentKind::Processor,
                type_name: f.type_name(),
                description: f.description(),
                signals: None,
            });
        }
        for f in self.exporters.values() {
            out.push(Listing {
                kind: ComponentKind::Exporter,
                type_name: f.type_name(),
                description: f.description(),
                signals: Some(f.signals().to_string()),
            });
        }
        for f in self.extensions.values() {
            out.push(Listing {
                kind: ComponentKind::Extension,
                type_name: f.type_name(),
                description: f.description(),
                signals: None,
            });
        }
        out
    }
}
