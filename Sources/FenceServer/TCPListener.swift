import FenceConfig
import FenceWire
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// Accepts `fence_virt -T` connections: the request and the exchange travel on the accepted stream,
/// and the access list sees the real peer address.
public final class TCPListener: Service {
    public let name: String
    private let channel: NIOAsyncChannel<any Channel, Never>
    private let credentials: Mutex<ListenerCredentials>
    private let pipeline: RequestPipeline
    private let logger: Logger

    public static func bind(
        settings: TCPListenerSettings,
        credentials: ListenerCredentials,
        pipeline: RequestPipeline,
        eventLoopGroup: any EventLoopGroup,
        logger: Logger
    ) async throws -> TCPListener {
        let name = "tcp \(settings.address) port \(settings.port)"
        let channel: NIOAsyncChannel<any Channel, Never>
        do {
            channel = try await ServerBootstrap(group: eventLoopGroup)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .serverChannelOption(.backlog, value: 64)
                .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
                .bind(to: try SocketAddress(ipAddress: settings.address.description, port: Int(settings.port))) { child in
                    child.eventLoop.makeCompletedFuture {
                        try StreamSession.prepare(child)
                        return child
                    }
                }
        } catch {
            throw ListenerError(code: .bindFailed, message: "\(name): cannot listen: \(error)")
        }
        return TCPListener(name: name, channel: channel, credentials: credentials, pipeline: pipeline, logger: logger)
    }

    private init(
        name: String,
        channel: NIOAsyncChannel<any Channel, Never>,
        credentials: ListenerCredentials,
        pipeline: RequestPipeline,
        logger: Logger
    ) {
        self.name = name
        self.channel = channel
        self.credentials = Mutex(credentials)
        self.pipeline = pipeline
        self.logger = logger
    }

    /// Releases the socket of a listener that will never run (another part failed to start).
    public func close() async {
        try? await channel.executeThenClose { _ in }
    }

    /// A reloaded key and digests, for requests received from now on.
    public func update(credentials: ListenerCredentials) {
        self.credentials.withLock { $0 = credentials }
    }

    public func run() async throws {
        logger.info("listening", metadata: ["listener": "\(name)"])
        try await withGracefulShutdownHandler {
            try await channel.executeThenClose { inbound, _ in
                await withDiscardingTaskGroup { group in
                    do {
                        for try await connection in inbound {
                            // Each connection's task runs on that connection's event loop.
                            group.addTask(executorPreference: EventLoopExecutor(connection.eventLoop)) {
                                await self.pipeline.serveStream(connection, listener: self.name, credentials: self.credentials.withLock { $0 })
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
