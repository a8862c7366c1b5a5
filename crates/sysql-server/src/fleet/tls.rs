//! Mutual TLS between the coordinator and its workers: certificates and
//! keys from PEM files, one CA that signs both sides. There is no plaintext
//! mode.

use std::path::{Path, PathBuf};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// Where a side's certificate, key and the CA it trusts are.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

fn read(what: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))
}

impl TlsFiles {
    fn identity(&self) -> Result<Identity, String> {
        Ok(Identity::from_pem(read("certificate", &self.cert)?, read("key", &self.key)?))
    }

    fn ca(&self) -> Result<Certificate, String> {
        Ok(Certificate::from_pem(read("CA certificate", &self.ca)?))
    }

    /// A worker's: its certificate, and only clients whose certificate the
    /// CA signed.
    pub fn server(&self) -> Result<ServerTlsConfig, String> {
        Ok(ServerTlsConfig::new().identity(self.identity()?).client_ca_root(self.ca()?))
    }

    /// The coordinator's: its certificate, and only workers whose
    /// certificate the CA signed.
    pub fn client(&self) -> Result<ClientTlsConfig, String> {
        Ok(ClientTlsConfig::new().identity(self.identity()?).ca_certificate(self.ca()?))
    }
}
