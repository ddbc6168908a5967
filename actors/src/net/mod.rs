//! Connections on the wire: the listener accepts them, the I/O task of each one runs
//! the read and write loop over a [`transport::Transport`] (today [`tcp::TcpTransport`]:
//! TCP with STARTTLS or direct TLS).

pub mod io;
pub mod listener;
pub mod tcp;
pub mod transport;
