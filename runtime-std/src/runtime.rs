//! The blocking runtime: one thread, one `std::net::UdpSocket`, read timeouts from the core.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::thread;
use std::time::Duration;

use grapevine_driver::{Clock, Command, Driver, Handle, Options, RECV_BUFFER_SIZE, RuntimeError};

/// The longest the loop blocks in one receive, as a safety net: commands wake it
/// at once through a local datagram.
const MAX_WAIT: Duration = Duration::from_secs(1);

/// Binds the socket, starts the node's thread and joins `options.seeds`.
///
/// Returns once the socket is bound, so a bad address or a port in use is an
/// error here, not later.
pub fn spawn(options: Options) -> Result<Handle, RuntimeError> {
    let socket = options.bind_socket()?;
    let local_addr = socket.local_addr()?;
    let driver = Driver::new(&options, local_addr, Clock::new())?;
    // Commands wake the blocked receive with an empty datagram from this socket.
    let target = wake_target(local_addr);
    let waker = UdpSocket::bind(SocketAddr::new(target.ip(), 0))?;
    let waker_addr = waker.local_addr()?;
    let (commands, rx) = mpsc::channel();
    let handle = Handle::new(&driver, move |command| {
        commands.send(command).map_err(|_| RuntimeError::Stopped)?;
        // A lost wake-up only delays the command until the next timer.
        let _ = waker.send_to(&[], target);
        Ok(())
    });
    thread::Builder::new()
        .name(format!("grapevine {local_addr}"))
        .spawn(move || run(driver, rx, waker_addr, socket))?;
    Ok(handle)
}

/// The loop. The socket is the last parameter, so it is closed before the driver is
/// dropped and answers whoever waits for the node to stop.
fn run(mut driver: Driver, commands: Receiver<Command>, waker: SocketAddr, socket: UdpSocket) {
    let mut buf = vec![0u8; RECV_BUFFER_SIZE];
    let mut open = true;
    loop {
        while open {
            match commands.try_recv() {
                Ok(command) => driver.handle_command(command),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    open = false;
                    driver.handle_commands_closed();
                }
            }
        }
        driver.handle_timeout();
        driver.flush(|dest, payload| socket.send_to(payload, dest).map(drop));
        if driver.is_done() {
            break;
        }
        let wait = driver.time_to_deadline().unwrap_or(MAX_WAIT);
        // A zero read timeout is an error: wait at least a millisecond.
        let wait = wait.clamp(Duration::from_millis(1), MAX_WAIT);
        if let Err(error) = socket.set_read_timeout(Some(wait)) {
            driver.handle_recv_error(&error);
        }
        match socket.recv_from(&mut buf) {
            Ok((0, from)) if from == waker => {}
            Ok((len, from)) => driver.handle_datagram(from, &buf[..len]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(error) => driver.handle_recv_error(&error),
        }
    }
    tracing::debug!(node = %driver.id().addr, "node stopped");
}

/// The address a local wake-up datagram should be sent to: the socket's own
/// address, with an unspecified IP replaced by loopback.
fn wake_target(local_addr: SocketAddr) -> SocketAddr {
    let ip = match local_addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, local_addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wake_target_replaces_unspecified_ips() {
        assert_eq!(
            wake_target("0.0.0.0:5".parse().unwrap()),
            "127.0.0.1:5".parse().unwrap()
        );
        assert_eq!(
            wake_target("[::]:5".parse().unwrap()),
            "[::1]:5".parse().unwrap()
        );
        assert_eq!(
            wake_target("10.0.0.1:5".parse().unwrap()),
            "10.0.0.1:5".parse().unwrap()
        );
    }
}
