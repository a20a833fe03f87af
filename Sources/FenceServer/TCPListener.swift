import FenceConfig
import FenceWire
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// How many connections a tcp listener serves at once, in all and from one peer address. Each
/// lives at most `request_timeout` plus the answer's step, so these bound its sockets too.
public struct ConnectionLimits: Sendable {
    public var total = 256
    public var perPeer = 16

    public init() {}
}

/// Accepts `fence_virt -T` connections: the request and the exchange travel on the accepted stream,
/// and the access list sees the real peer address.
public final class TCPListener: Service {
    public let name: String
    private let channel: NIOAsyncChannel<any Channel, Never>
    /// Read by each accepted connection's initialiser, so that the conversation uses the key in force.
    private let credentials: CurrentCredentials
    private let pipeline: RequestPipeline
    private let limits: ConnectionLimits
    private let connections = Mutex((total: 0, byPeer: [String: Int]()))
    private let logger: Logger

    public static func bind(
        settings: TCPListenerSettings,
        credentials: ListenerCredentials,
        pipeline: RequestPipeline,
        limits: ConnectionLimits = ConnectionLimits(),
        eventLoopGroup: any EventLoopGroup,
        logger: Logger
    ) async throws -> TCPListener {
        let name = "tcp \(settings.address) port \(settings.port)"
        let channel: NIOAsyncChannel<any Channel, Never>
        let current = CurrentCredentials(credentials)
        do {
            channel = try await ServerBootstrap(group: eventLoopGroup)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .serverChannelOption(.backlog, value: 64)
                .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
                .bind(to: try SocketAddress(ipAddress: settings.address.description, port: Int(settings.port))) { child in
                    child.eventLoop.makeCompletedFuture {
                        try StreamSession.prepare(child, credentials: current.value)
                        return child
                    }
                }
        } catch {
            throw ListenerError(code: .bindFailed, message: "\(name): cannot listen: \(error)")
        }
        return TCPListener(name: name, channel: channel, credentials: current, pipeline: pipeline, limits: limits, logger: logger)
    }

    private init(
        name: String,
        channel: NIOAsyncChannel<any Channel, Never>,
        credentials: CurrentCredentials,
        pipeline: RequestPipeline,
        limits: ConnectionLimits,
        logger: Logger
    ) {
        self.name = name
        self.channel = channel
        self.credentials = credentials
        self.pipeline = pipeline
        self.limits = limits
        self.logger = logger
    }

    /// Releases the socket of a listener that will never run (another part failed to start).
    public func close() async {
        try? await channel.executeThenClose { _ in }
    }

    /// A reloaded key and digests, for requests received from now on.
    public func update(credentials: ListenerCredentials) {
        self.credentials.value = credentials
    }

    private func admit(_ peer: String) -> Bool {
        connections.withLock { open in
            guard open.total < limits.total, open.byPeer[peer, default: 0] < limits.perPeer else { return false }
            open.total += 1
            open.byPeer[peer, default: 0] += 1
            return true
        }
    }

    private func release(_ peer: String) {
        connections.withLock { open in
            open.total -= 1
            open.byPeer[peer, default: 1] -= 1
            if open.byPeer[peer] == 0 { open.byPeer[peer] = nil }
        }
    }

    public func run() async throws {
        logger.info("listening", metadata: ["listener": "\(name)"])
        try await withGracefulShutdownHandler {
            try await channel.executeThenClose { inbound, _ in
                await withDiscardingTaskGroup { group in
                    do {
                        for try await connection in inbound {
                            let peer = connection.remoteAddress?.ipAddress ?? "?"
                            guard admit(peer) else {
                                connection.close(promise: nil)
                                pipeline.drop(.tooManyConnections, "\(limits.perPeer) from one peer or \(limits.total) in all are open", source: peer, listener: name)
                                continue
                            }
                            // Each connection's task runs on that connection's event loop.
                            group.addTask(executorPreference: EventLoopExecutor(connection.eventLoop)) {
                                await self.pipeline.serveStream(connection, listener: self.name)
                                self.release(peer)
                            }
                        }
                    } catch {
                        logger.error("accept failed", metadata: ["listener": "\(name)", "error": "\(error)"])
                    }
                }
            }
        } onGracefulShutdown: {
            self.channel.channel.close(promise: nil)
        }
        logger.info("stopped", metadata: ["listener": "\(name)"])
    }
}
