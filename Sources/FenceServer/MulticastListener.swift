#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import FenceConfig
import FenceWire
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// Receives fence_xvm's signed multicast datagrams (IPv4 or IPv6) and hands each new request to the
/// pipeline, which calls the client back. With `interface` set, only datagrams that arrived on that
/// interface are accepted (checked per packet; the reference accepts them from anywhere).
public final class MulticastListener: Service {
    public let name: String
    private let channel: NIOAsyncChannel<AddressedEnvelope<ByteBuffer>, AddressedEnvelope<ByteBuffer>>
    private let interfaceIndex: Int?
    private let credentials: CurrentCredentials
    private let pipeline: RequestPipeline
    private let logger: Logger

    /// The interface index of the `interface` setting; nil when none is set. Checked for every
    /// listener before any is bound.
    public static func interfaceIndex(of settings: MulticastListenerSettings) throws -> Int? {
        guard let interface = settings.interface else { return nil }
        let index = if_nametoindex(interface)
        guard index != 0 else {
            let place = settings.interfaceLocation.map { " (\($0))" } ?? ""
            throw ListenerError(code: .noSuchInterface, message: "multicast listener: there is no interface named \"\(interface)\"\(place)")
        }
        return Int(index)
    }

    /// Binds the socket and joins the group, so that a daemon reports ready only once it can receive.
    public static func bind(
        settings: MulticastListenerSettings,
        credentials: ListenerCredentials,
        pipeline: RequestPipeline,
        eventLoopGroup: any EventLoopGroup,
        logger: Logger
    ) async throws -> MulticastListener {
        let name = "multicast \(settings.group) port \(settings.port)\(settings.interface.map { " on \($0)" } ?? "")"
        let interfaceIndex = try interfaceIndex(of: settings)
        let ipv6 = settings.family == .ipv6
        let channel: NIOAsyncChannel<AddressedEnvelope<ByteBuffer>, AddressedEnvelope<ByteBuffer>>
        do {
            var bootstrap = DatagramBootstrap(group: eventLoopGroup)
                .channelOption(ChannelOptions.receivePacketInfo, value: true)
            if ipv6 {
                // IPv6 only, so that an IPv4 listener on the same port can run beside it.
                bootstrap = bootstrap.channelOption(ChannelOptions.Types.SocketOption(level: .ipv6, name: .ipv6_v6only), value: 1)
            }
            channel = try await bootstrap.bind(to: try SocketAddress(ipAddress: ipv6 ? "::" : "0.0.0.0", port: Int(settings.port))) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<AddressedEnvelope<ByteBuffer>, AddressedEnvelope<ByteBuffer>>(wrappingChannelSynchronously: channel)
                }
            }
        } catch {
            throw ListenerError(code: .bindFailed, message: "\(name): cannot bind UDP port \(settings.port): \(error)")
        }
        do {
            try await join(channel.channel, group: settings.group, interfaceIndex: interfaceIndex ?? 0)
        } catch {
            try? await channel.channel.close()
            throw ListenerError(code: .joinFailed, message: "\(name): cannot join the group: \(error) (is there a route for the group, or an interface set?)")
        }
        return MulticastListener(name: name, channel: channel, interfaceIndex: interfaceIndex, credentials: credentials, pipeline: pipeline, logger: logger)
    }

    private init(
        name: String,
        channel: NIOAsyncChannel<AddressedEnvelope<ByteBuffer>, AddressedEnvelope<ByteBuffer>>,
        interfaceIndex: Int?,
        credentials: ListenerCredentials,
        pipeline: RequestPipeline,
        logger: Logger
    ) {
        self.name = name
        self.channel = channel
        self.interfaceIndex = interfaceIndex
        self.credentials = CurrentCredentials(credentials)
        self.pipeline = pipeline
        self.logger = logger
    }

    /// Releases the socket of a listener that will never run (another part failed to start).
    public func close() async {
        try? await channel.executeThenClose { _, _ in }
    }

    /// A reloaded key and digests, for requests received from now on.
    public func update(credentials: ListenerCredentials) {
        self.credentials.value = credentials
    }

    /// Serves until graceful shutdown, then lets requests under way finish (each within its deadline).
    public func run() async throws {
        logger.info("listening", metadata: ["listener": "\(name)"])
        // The receive loop and every request run on the socket's event loop: no thread hops
        // between NIO and Swift's cooperative pool.
        let executor = EventLoopExecutor(channel.channel.eventLoop)
        try await withGracefulShutdownHandler {
            try await withTaskExecutorPreference(executor) {
                try await serve(executor: executor)
            }
        } onGracefulShutdown: {
            self.channel.channel.close(promise: nil)
        }
        logger.info("stopped", metadata: ["listener": "\(name)"])
    }

    private func serve(executor: EventLoopExecutor) async throws {
        try await channel.executeThenClose { inbound, _ in
            // Requests are child tasks: they inherit the executor, and the group waits for them.
            await withDiscardingTaskGroup { group in
                do {
                    for try await envelope in inbound {
                        if let interfaceIndex, let arrived = envelope.metadata?.packetInfo?.interfaceIndex, arrived != interfaceIndex {
                            pipeline.drop(.wrongInterface, "arrived on interface index \(arrived)", source: envelope.remoteAddress.ipAddress ?? "?", listener: name)
                            continue
                        }
                        guard let admitted = pipeline.admit(datagram: envelope.data, source: envelope.remoteAddress, listener: name, credentials: credentials.value) else { continue }
                        group.addTask { await self.pipeline.serveDatagram(admitted) }
                    }
                } catch {
                    logger.error("receive failed", metadata: ["listener": "\(name)", "error": "\(error)"])
                }
            }
        }
    }

    /// Joins by interface index (`ip_mreqn`/`ipv6_mreq`), as the reference does; NIO's own join
    /// needs an address on the interface. Also stops the socket from receiving groups that other
    /// sockets of the host joined (`IP_MULTICAST_ALL`).
    private static func join(_ channel: any Channel, group: CallbackAddress, interfaceIndex: Int) async throws {
        guard let socket = channel as? any SocketOptionProvider else { return }
        switch group.family {
        case .ipv4:
            var request = ip_mreqn()
            withUnsafeMutableBytes(of: &request.imr_multiaddr) { $0.copyBytes(from: group.bytes) }
            request.imr_ifindex = Int32(interfaceIndex)
            try await socket.unsafeSetSocketOption(level: .ip, name: .init(rawValue: IP_ADD_MEMBERSHIP), value: request).get()
            try await socket.unsafeSetSocketOption(level: .ip, name: .init(rawValue: 49 /* IP_MULTICAST_ALL */), value: Int32(0)).get()
        case .ipv6:
            var request = ipv6_mreq()
            withUnsafeMutableBytes(of: &request.ipv6mr_multiaddr) { $0.copyBytes(from: group.bytes) }
            request.ipv6mr_interface = UInt32(interfaceIndex)
            try await socket.unsafeSetSocketOption(level: .ipv6, name: .init(rawValue: IPV6_ADD_MEMBERSHIP), value: request).get()
            try await socket.unsafeSetSocketOption(level: .ipv6, name: .init(rawValue: 29 /* IPV6_MULTICAST_ALL */), value: Int32(0)).get()
        }
    }
}
