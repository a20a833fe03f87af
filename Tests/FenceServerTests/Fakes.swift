import FenceCore
import FenceWire
import NIOCore
import NIOPosix
import Synchronization
import TestSupport
@testable import FenceServer

/// Event loops of the pipeline tests' own, apart from the process-wide singleton: the unit tests
/// run beside everything else in one test process, and the time others' work takes on a shared
/// loop must not decide their outcome.
enum TestLoops {
    /// Where the fake clients accept call-backs.
    static let clients = MultiThreadedEventLoopGroup(numberOfThreads: 1)
}

/// A stand-in for the call-back side of fence_xvm, for unit tests of the pipeline: it listens on
/// a loopback address, accepts call-backs, runs the client half of the challenge-response, and
/// records what it was sent. The real client is used in the end-to-end tests.
final class FakeFenceClient: Sendable {
    enum Behaviour: Sendable {
        case honest
        /// Answers the daemon's challenge wrongly.
        case wrongResponse
        /// Waits this long before sending its challenge.
        case slowChallenge(Duration)
        /// Waits for this signal before sending its challenge.
        case heldChallenge(AsyncStream<Void>)
        /// Sends this as its challenge instead of random bytes.
        case challenge([UInt8])
        /// Sends this many bytes of junk after its answer, while waiting for the result.
        case chatter(Int)
    }

    let port: Int
    let address: String
    private let server: NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never>
    private let record = Record()
    private let task: Task<Void, Never>

    private final class Record: Sendable {
        let answers: Mutex<[[UInt8]]> = Mutex([])
        let accepted = Mutex(0)
    }

    init(address: String = "127.0.0.1", key: FenceKey, auth: HashAlgorithm = .sha256, behaviour: Behaviour = .honest) async throws {
        self.address = address
        let server = try await ServerBootstrap(group: TestLoops.clients)
            .bind(host: address, port: 0) { child in
                child.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: child) }
            }
        self.server = server
        port = server.channel.localAddress!.port!
        let exchange = ChallengeResponse(key: key, algorithm: auth)
        let record = self.record
        let endpoint = "\(address):\(port)"
        task = Task {
            try? await server.executeThenClose { inbound in
                for try await connection in inbound {
                    record.accepted.withLock { $0 += 1 }
                    let stage = Stage()
                    let bytes: [UInt8]
                    do {
                        bytes = try await Self.converse(connection, exchange: exchange, behaviour: behaviour, stage: stage)
                    } catch let error as TimedOut {
                        // Says where it stuck, for the test that then fails on what it received.
                        print("FakeFenceClient \(endpoint): \(error) while \(stage.name)")
                        bytes = []
                    } catch {
                        bytes = []
                    }
                    record.answers.withLock { $0.append(bytes) }
                }
            }
        }
    }

    /// The step a conversation is at, for the message when it times out.
    private final class Stage: Sendable {
        private let current = Mutex("sending the challenge")
        var name: String { current.withLock { $0 } }
        func enter(_ name: String) { current.withLock { $0 = name } }
    }

    private static func converse(_ connection: NIOAsyncChannel<ByteBuffer, ByteBuffer>, exchange: ChallengeResponse, behaviour: Behaviour, stage: Stage) async throws -> [UInt8] {
        // A bound on a hang, not on the daemon's speed. (The stalls once seen here, every fake
        // client waiting for its end of stream together for up to 120 s, were copies of the
        // pipeline's sockets inherited by brokers that other tests started: see Spawn.)
        try await withTimeout(.seconds(30), "the fake client's conversation") {
            try await connection.executeThenClose { inbound, outbound in
                var reader = ByteReader(inbound.makeAsyncIterator())
                if exchange.algorithm != .none {
                    if case .slowChallenge(let delay) = behaviour { try await Task.sleep(for: delay) }
                    if case .heldChallenge(let signal) = behaviour { for await _ in signal { break } }
                    var ours = (0..<64).map { _ in UInt8.random(in: .min ... .max) }
                    if case .challenge(let given) = behaviour { ours = given }
                    try await outbound.write(ByteBuffer(bytes: ours))
                    stage.enter("reading the response to our challenge")
                    let response = try await reader.read(64)
                    guard exchange.isValid(response: response, to: ours) else { return [] }
                    stage.enter("reading the daemon's challenge")
                    let challenge = try await reader.read(64)
                    var answer = exchange.response(to: challenge)
                    if case .wrongResponse = behaviour { answer[0] ^= 0xFF }
                    stage.enter("sending our response")
                    try await outbound.write(ByteBuffer(bytes: answer))
                }
                if case .chatter(let count) = behaviour { try await outbound.write(ByteBuffer(bytes: [UInt8](repeating: 7, count: count))) }
                stage.enter("reading the answer until the daemon closes")
                let rest = try await reader.rest()
                stage.enter("closing after \(rest.count) bytes of answer")
                return rest
            }
        }
    }

    /// How many call-backs were accepted so far.
    var callbacks: Int { record.accepted.withLock { $0 } }

    /// What each call-back delivered after the exchange (empty when nothing came).
    var received: [[UInt8]] { record.answers.withLock { $0 } }

    func close() async {
        try? await server.channel.close()
        await task.value
    }
}

/// Reads exact amounts from an inbound byte stream.
struct ByteReader {
    private var iterator: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    private var buffer = ByteBuffer()

    init(_ iterator: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator) {
        self.iterator = iterator
    }

    struct Closed: Error {}

    mutating func read(_ count: Int) async throws -> [UInt8] {
        while buffer.readableBytes < count {
            guard var more = try await iterator.next() else { throw Closed() }
            buffer.writeBuffer(&more)
        }
        return buffer.readBytes(length: count)!
    }

    /// Everything until the peer closes (nothing if it resets).
    mutating func rest() async throws -> [UInt8] {
        while var more = try? await iterator.next() {
            buffer.writeBuffer(&more)
        }
        return buffer.readBytes(length: buffer.readableBytes) ?? []
    }
}

/// A backend that records its calls and how many ran at once, for unit tests only.
final class RecordingBackend: FenceBackend {
    /// Holds every call until this many are in at once (or the request's deadline passes): a
    /// concurrency shown, not one a window of time makes likely.
    let meeting: Int
    /// Waits for an answer that never comes: fails with `timedOut` at the request's deadline.
    let hangsUntilDeadline: Bool
    /// Called as each call begins.
    let beginning: (@Sendable () -> Void)?
    private let state = Mutex((calls: [String](), inFlight: 0, maximum: 0))

    init(meeting: Int = 0, hangsUntilDeadline: Bool = false, beginning: (@Sendable () -> Void)? = nil) {
        self.meeting = meeting
        self.hangsUntilDeadline = hangsUntilDeadline
        self.beginning = beginning
    }

    var calls: [String] { state.withLock { $0.calls } }
    var maximumConcurrency: Int { state.withLock { $0.maximum } }

    func perform(_ action: FenceAction, on target: DomainTarget, deadline: ContinuousClock.Instant) async -> FenceOutcome {
        beginning?()
        state.withLock {
            $0.calls.append("\(action) \(target)")
            $0.inFlight += 1
            $0.maximum = max($0.maximum, $0.inFlight)
        }
        while maximumConcurrency < meeting, ContinuousClock.now < deadline {
            guard (try? await Task.sleep(for: .milliseconds(5))) != nil else { break }
        }
        if hangsUntilDeadline { try? await Task.sleep(until: deadline) }
        state.withLock { $0.inFlight -= 1 }
        if hangsUntilDeadline { return .failed(FenceFailure(.timedOut, "no answer before the deadline")) }
        return action == .status ? .off : .success
    }

    func listDomains(deadline: ContinuousClock.Instant) async throws(FenceFailure) -> [DomainInfo] {
        state.withLock { $0.calls.append("list") }
        return [DomainInfo(name: "vm-a", uuid: "aaaaaaaa-0000-4000-8000-000000000001", state: .running, persistent: true)]
    }

    func checkHealth(deadline: ContinuousClock.Instant) async -> FenceOutcome { .success }
}
