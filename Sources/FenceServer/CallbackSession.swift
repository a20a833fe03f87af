#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import FenceWire

/// A call-back to a fence_xvm client on a plain non-blocking socket, driven with poll(2) by the
/// thread it runs on: a request's own thread (`RequestThreads`), never Swift's cooperative pool.
/// Every wait has a limit; past it the step fails as timed out.
final class CallbackSession: ClientStream {
    let credentials: ListenerCredentials
    private var descriptor: Int32
    private var conversation: Conversation
    /// Milestones reached and not yet asked for (a refusal among them).
    private var reached: [Result<SessionMilestone, SessionError>] = []
    private var peerClosed = false

    /// Starts connecting: the SYN has left when this returns.
    init(dialling endpoint: Endpoint, credentials: ListenerCredentials) throws(SessionError) {
        self.credentials = credentials
        conversation = credentials.conversation(.callback)
        descriptor = socket(endpoint.address.family == .ipv4 ? AF_INET : AF_INET6, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw Self.failure("socket") }
        // The challenge and the answer go out as they are written. (No keepalive: a call-back
        // ends by the request's deadline, long before a first probe.)
        var one: Int32 = 1
        _ = setsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        let started = withSocketAddress(endpoint.address.family, endpoint.address.bytes, port: endpoint.port) { connect(descriptor, $0, $1) }
        guard started == 0 || errno == EINPROGRESS else {
            let error = Self.failure("connect")
            close()
            throw error
        }
    }

    deinit {
        close()
    }

    /// Waits until the connection is made, by `limit` at the latest, and starts the conversation.
    func connected(until limit: ContinuousClock.Instant) throws(SessionError) {
        try wait(for: Int16(POLLOUT), until: limit)
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(descriptor, SOL_SOCKET, SO_ERROR, &error, &length) == 0 else { throw Self.failure("connect") }
        guard error == 0 else { throw SessionError(code: .closed, detail: "connect: \(String(cString: strerror(error)))") }
        handle(conversation.start(), until: limit)
    }

    func next(until limit: ContinuousClock.Instant) throws(SessionError) -> SessionMilestone {
        while reached.isEmpty {
            guard !peerClosed else { throw SessionError(code: .closed, detail: "the client closed the connection") }
            let bytes = try receive(until: limit)
            if bytes.isEmpty {
                peerClosed = true
            } else {
                handle(conversation.receive(bytes), until: limit)
            }
        }
        return try reached.removeFirst().get()
    }

    var interruption: SessionError? {
        // What the client sent meanwhile, without waiting: anything at all breaks the protocol.
        if !peerClosed, !conversation.isRefused, descriptor >= 0 {
            do throws(SessionError) {
                let bytes = try receive(until: .now)
                if bytes.isEmpty {
                    peerClosed = true
                } else {
                    handle(conversation.receive(bytes), until: .now)
                }
            } catch where error.code == .timedOut {
                // Nothing waiting: the client keeps quiet, as it should.
            } catch {
                peerClosed = true
            }
        }
        if conversation.isRefused { return SessionError(code: .refused, detail: "excess-data: the client sent data while waiting for its answer", refusal: .excessData) }
        if peerClosed || descriptor < 0 { return SessionError(code: .closed, detail: "the client closed the connection before its answer") }
        return nil
    }

    func write(_ bytes: [UInt8], until limit: ContinuousClock.Instant) throws(SessionError) {
        var offset = 0
        while offset < bytes.count {
            guard descriptor >= 0 else { throw SessionError(code: .closed, detail: "write: the connection is closed") }
            let written = bytes[offset...].withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if written >= 0 {
                offset += written
            } else if errno == EAGAIN || errno == EWOULDBLOCK {
                try wait(for: Int16(POLLOUT), until: limit)
            } else if errno != EINTR {
                throw Self.failure("write")
            }
        }
    }

    func close() {
        guard descriptor >= 0 else { return }
        closeDescriptor(descriptor)
        descriptor = -1
    }

    // MARK: - Steps

    private func handle(_ events: [Conversation.Event], until limit: ContinuousClock.Instant) {
        for event in events {
            switch event {
            case .send(let bytes):
                do throws(SessionError) {
                    try write(bytes, until: limit)
                } catch {
                    reached.append(.failure(error))
                    close()
                    return
                }
            case .request(let bytes):
                reached.append(.success(.request(bytes)))
            case .authenticated:
                reached.append(.success(.authenticated))
            case .refused(let refusal):
                reached.append(.failure(SessionError(code: .refused, detail: refusal.rawValue, refusal: refusal)))
                close()
            }
        }
    }

    /// What the client sent next (empty when it closed), by `limit` at the latest.
    private func receive(until limit: ContinuousClock.Instant) throws(SessionError) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: 512)
        while true {
            guard descriptor >= 0 else { throw SessionError(code: .closed, detail: "the connection is closed") }
            // Waits first: the client has rarely answered yet when we ask.
            try wait(for: Int16(POLLIN), until: limit)
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count >= 0 {
                return Array(buffer[..<count])
            } else if errno == EAGAIN || errno == EWOULDBLOCK {
                continue
            } else if errno == ECONNRESET {
                return []
            } else if errno != EINTR {
                throw Self.failure("read")
            }
        }
    }

    /// Waits until the socket is ready for `events`, or fails as timed out at `limit`.
    private func wait(for events: Int16, until limit: ContinuousClock.Instant) throws(SessionError) {
        while true {
            var entry = pollfd(fd: descriptor, events: events, revents: 0)
            let remaining = limit - .now
            // Rounded up, so that a wait never ends just before its limit and spins.
            let milliseconds = remaining <= .zero ? 0 : Int32(clamping: (remaining.components.seconds * 1000) + remaining.components.attoseconds / 1_000_000_000_000_000 + 1)
            let ready = poll(&entry, 1, milliseconds)
            if ready > 0 { return }
            if ready == 0 {
                if remaining <= .zero { throw SessionError(code: .timedOut, detail: "out of time") }
                continue
            }
            if errno != EINTR { throw Self.failure("poll") }
        }
    }

    private static func failure(_ call: String) -> SessionError {
        SessionError(code: .ioFailed, detail: "\(call): \(String(cString: strerror(errno)))")
    }
}
