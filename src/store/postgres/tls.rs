//! TLS for the PostgreSQL connection: rustls on ring (the provider the rest of the service
//! uses), verifying the server's certificate chain and host name, against `DATABASE_CA_CERT`
//! when it is set, else Mozilla's roots. No channel binding: SCRAM without `-PLUS`, which
//! Supabase, Supavisor and PgBouncer accept.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use tokio_postgres::Socket;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use super::Refusal;

/// Makes a verifying TLS connector for each host tokio-postgres connects to.
#[derive(Clone)]
pub(super) struct MakeRustls {
    config: Arc<ClientConfig>,
}

impl MakeRustls {
    /// Trusts the certificates of `ca` (PEM text, or the path of a PEM file) only, or, without
    /// it, Mozilla's root CAs.
    pub(super) fn new(ca: Option<&str>) -> Result<MakeRustls, Refusal> {
        let Some(ca) = ca else {
            // The process's shared configuration (`crate::outbound`): Mozilla's roots, ring.
            return Ok(MakeRustls {
                config: crate::outbound::tls_config(),
            });
        };
        let mut roots = RootCertStore::empty();
        for cert in certificates(ca)? {
            roots
                .add(cert)
                .map_err(|_| "holds a certificate rustls cannot use as a CA")?;
        }
        Ok(MakeRustls {
            config: Arc::new(crate::outbound::config_trusting(roots)),
        })
    }
}

/// The certificates of PEM text (line breaks as they are, or written `\n`), or of the PEM
/// file at a path.
fn certificates(ca: &str) -> Result<Vec<CertificateDer<'static>>, Refusal> {
    let pem = if ca.contains("-----BEGIN") {
        // One-line PEM, as a dashboard's single-line field or a CloudFormation parameter holds
        // it: `\n` written out for each line break.
        ca.replace("\\n", "\n").into_bytes()
    } else {
        std::fs::read(ca).map_err(|_| "is neither PEM text nor a readable PEM file")?
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|_| "holds PEM that is not a certificate")?;
    if certs.is_empty() {
        return Err("holds no PEM certificate");
    }
    Ok(certs)
}

impl MakeTlsConnect<Socket> for MakeRustls {
    type Stream = RustlsStream;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, io::Error> {
        let name = ServerName::try_from(domain.to_string())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "invalid host name"))?;
        Ok(RustlsConnect {
            config: self.config.clone(),
            name,
        })
    }
}

pub(super) struct RustlsConnect {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl TlsConnect<Socket> for RustlsConnect {
    type Stream = RustlsStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        Box::pin(async move {
            let stream = TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await?;
            Ok(RustlsStream(Box::new(stream)))
        })
    }
}

pub(super) struct RustlsStream(Box<tokio_rustls::client::TlsStream<Socket>>);

impl AsyncRead for RustlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for RustlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

impl TlsStream for RustlsStream {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_setting_without_a_certificate_is_refused() {
        assert!(MakeRustls::new(None).is_ok());
        assert!(MakeRustls::new(Some("/nonexistent/ca.pem")).is_err());
        assert!(MakeRustls::new(Some("-----BEGIN CERTIFICATE-----\nnot base64\n")).is_err());
        let empty = std::env::temp_dir().join(format!("chamada-empty-{}.pem", std::process::id()));
        std::fs::write(&empty, "no certificate here\n").unwrap();
        assert_eq!(
            MakeRustls::new(Some(empty.to_str().unwrap())).err(),
            Some("holds no PEM certificate")
        );
        let _ = std::fs::remove_file(empty);
    }
}
