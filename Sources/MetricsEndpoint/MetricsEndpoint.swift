import BuildInfo
import Logging
import Metrics
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import ServiceLifecycle

/// `GET /metrics` in Prometheus's text format, from what the daemon's parts count through
/// swift-metrics. It only reads counters: a failure here (the port taken, say) is logged and
/// never stops the daemon from fencing.
public final class MetricsEndpoint: Service {
    private let host: String
    private let port: Int
    private let registry: PrometheusCollectorRegistry
    private let logger: Logger

    /// The endpoint at `host`:`port`, with swift-metrics counting into it from now on; call it
    /// once per process, before anything counts. Without an endpoint nothing is counted.
    public static func bootstrapped(host: String, port: Int, logger: Logger) -> MetricsEndpoint {
        let endpoint = MetricsEndpoint(host: host, port: port, registry: bootstrap(), logger: logger)
        // Which build answers, as Prometheus's *_build_info habit has it: one series, always 1.
        Gauge(label: "fence_router_build_info", dimensions: [("version", BuildInfo.version), ("commit", BuildInfo.commit ?? "")]).record(1)
        return endpoint
    }

    /// Makes swift-metrics count into a Prometheus registry, once per process, and returns it.
    static func bootstrap() -> PrometheusCollectorRegistry {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        // From a millisecond on loopback to the 20 s request deadline and past it.
        factory.defaultDurationHistogramBuckets = [
            .milliseconds(1), .milliseconds(2.5), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
            .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10),
            .seconds(20), .seconds(30),
        ]
        MetricsSystem.bootstrap(factory)
        return registry
    }

    init(host: String, port: Int, registry: PrometheusCollectorRegistry, logger: Logger) {
        self.host = host
        self.port = port
        self.registry = registry
        var logger = logger
        logger[metadataKey: "metrics"] = "\(host):\(port)"
        self.logger = logger
    }

    public func run() async throws {
        let server: NIOAsyncChannel<NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, Never>
        do {
            server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .bind(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                        return try NIOAsyncChannel(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            logger.error("metrics endpoint unavailable; fencing goes on without it", metadata: ["error": "\(error)"])
            try? await gracefulShutdown()
            return
        }
        logger.info("serving metrics")
        try? await cancelWhenGracefulShutdown {
            try await server.executeThenClose { connections in
                try await withThrowingDiscardingTaskGroup { group in
                    for try await connection in connections {
                        group.addTask { try? await self.serve(connection) }
                    }
                }
            }
        }
    }

    /// One request per connection: the scrape, then close.
    private func serve(_ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>) async throws {
        try await connection.executeThenClose { inbound, outbound in
            var head: HTTPRequestHead?
            for try await part in inbound {
                switch part {
                case .head(let request):
                    head = request
                case .body:
                    continue
                case .end:
                    guard let request = head else { return }
                    let found = request.method == .GET && (request.uri == "/metrics" || request.uri.hasPrefix("/metrics?"))
                    var body = ByteBuffer()
                    if found {
                        var bytes: [UInt8] = []
                        registry.emit(into: &bytes)
                        body.writeBytes(bytes)
                    } else {
                        body.writeString("only GET /metrics is served here\n")
                    }
                    var headers = HTTPHeaders()
                    headers.add(name: "Content-Type", value: found ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain")
                    headers.add(name: "Content-Length", value: "\(body.readableBytes)")
                    headers.add(name: "Connection", value: "close")
                    try await outbound.write(.head(HTTPResponseHead(version: request.version, status: found ? .ok : .notFound, headers: headers)))
                    try await outbound.write(.body(.byteBuffer(body)))
                    try await outbound.write(.end(nil))
                    return
                }
            }
        }
    }
}
