import FenceWire
import NIOConcurrencyHelpers
import NIOCore

/// Why a conversation with a client ended early.
struct SessionError: Error, CustomStringConvertible {
    enum Code: String {
        case timedOut = "timed-out"
        case closed = "closed-by-peer"
        case ioFailed = "io-failed"
        /// The conversation refused the client (see `Conversation.Refusal`).
        case refused
    }

    let code: Code
    let detail: String
    var refusal: Conversation.Refusal?

    var description: String { "\(code.rawValue): \(detail)" }
}

/// A milestone of a conversation with a client.
enum SessionMilestone {
    case request([UInt8])
    case authenticated
}

/// The byte stream to one fence_xvm client, as the pipeline uses it once the conversation runs.
protocol ClientStream {
    /// The next milestone, by `limit` at the latest.
    func next(until limit: ContinuousClock.Instant) async throws(SessionError) -> SessionMilestone
    /// Nil while the client kept quiet since it authenticated and the connection is open.
    var interruption: SessionError? { get async }
    /// Writes and waits until the bytes are handed to the kernel, by `limit` at the latest.
    func write(_ bytes: [UInt8], until limit: ContinuousClock.Instant) async throws(SessionError)
}

/// Drives one `Conversation` on its channel: feeds it what the client sends, writes what it says
/// to write at once (on the event loop, no task hop), and hands its milestones (a stream's
/// request, an authenticated client, a refusal) to whoever waits for them. One per connection,
/// added when the channel is made; used only on its event loop.
final class ConversationHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    /// The credentials the conversation was made with, for whatever else checks the request.
    let credentials: ListenerCredentials
    private var conversation: Conversation
    private var context: ChannelHandlerContext?
    private var reached: [Result<SessionMilestone, SessionError>] = []
    private var waiting: EventLoopPromise<SessionMilestone>?
    private var ended = false

    init(credentials: ListenerCredentials) {
        self.credentials = credentials
        self.conversation = credentials.conversation(.stream)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func channelActive(context: ChannelHandlerContext) {
        handle(conversation.start())
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        handle(conversation.receive(bytes.readableBytesView))
    }

    func channelInactive(context: ChannelHandlerContext) {
        ended = true
        deliver(.failure(SessionError(code: .closed, detail: "the client closed the connection")))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    /// Why the conversation cannot take an answer any more: the client broke the protocol after
    /// it authenticated (it sent anything at all), or the connection is gone. Nil while intact.
    var interruption: SessionError? {
        if conversation.isRefused { return SessionError(code: .refused, detail: "excess-data: the client sent data while waiting for its answer", refusal: .excessData) }
        if ended { return SessionError(code: .closed, detail: "the client closed the connection before its answer") }
        return nil
    }

    /// Completes `promise` with the next milestone, or fails it when the conversation ends first.
    func next(_ promise: EventLoopPromise<SessionMilestone>) {
        precondition(waiting == nil, "one wait at a time")
        if !reached.isEmpty {
            promise.completeWith(reached.removeFirst().mapError { $0 as any Error })
        } else if ended {
            promise.fail(SessionError(code: .closed, detail: "the conversation is over"))
        } else {
            waiting = promise
        }
    }

    /// The stream's request was checked: go on with the exchange.
    func requestAccepted() {
        handle(conversation.requestAccepted())
    }

    private func handle(_ events: [Conversation.Event]) {
        for event in events {
            switch event {
            case .send(let bytes):
                context?.writeAndFlush(NIOAny(ByteBuffer(bytes: bytes)), promise: nil)
            case .request(let bytes):
                deliver(.success(.request(bytes)))
            case .authenticated:
                deliver(.success(.authenticated))
            case .refused(let refusal):
                deliver(.failure(SessionError(code: .refused, detail: refusal.rawValue, refusal: refusal)))
                context?.close(promise: nil)
            }
        }
    }

    private func deliver(_ result: Result<SessionMilestone, SessionError>) {
        if let waiting {
            self.waiting = nil
            waiting.completeWith(result.mapError { $0 as any Error })
        } else {
            reached.append(result)
        }
    }
}

/// The byte stream to one `fence_virt -T` client, on a NIO channel: waits for the
/// conversation's milestones within a limit, and writes the answer.
struct StreamSession: ClientStream {
    let channel: any Channel
    /// The credentials read once, when the connection was made: a reload meanwhile cannot mix keys.
    let credentials: ListenerCredentials
    private let handler: NIOLoopBound<ConversationHandler>

    private init(channel: any Channel, handler: NIOLoopBound<ConversationHandler>, credentials: ListenerCredentials) {
        self.channel = channel
        self.handler = handler
        self.credentials = credentials
    }

    /// A session on `channel`, which must carry a `ConversationHandler` (see `prepare`).
    static func open(_ channel: any Channel) async throws -> StreamSession {
        let eventLoop = channel.eventLoop
        let find: @Sendable () throws -> StreamSession = {
            let handler = try channel.pipeline.syncOperations.handler(type: ConversationHandler.self)
            return StreamSession(channel: channel, handler: NIOLoopBound(handler, eventLoop: eventLoop), credentials: handler.credentials)
        }
        return eventLoop.inEventLoop ? try find() : try await eventLoop.submit(find).get()
    }

    /// Adds the handler a session needs; for channel initialisers (on the channel's event loop).
    static func prepare(_ channel: any Channel, credentials: ListenerCredentials) throws {
        try channel.pipeline.syncOperations.addHandler(ConversationHandler(credentials: credentials))
    }

    /// The next milestone, by `limit` at the latest (then the channel is closed).
    func next(until limit: ContinuousClock.Instant) async throws(SessionError) -> SessionMilestone {
        let guardian = StepGuard(channel: channel, limit: limit)
        defer { guardian.cancel() }
        let promise = channel.eventLoop.makePromise(of: SessionMilestone.self)
        let handler = self.handler
        channel.eventLoop.execute { handler.value.next(promise) }
        do {
            return try await promise.futureResult.get()
        } catch let error as SessionError where error.code == .refused {
            throw error
        } catch {
            throw guardian.failure("\((error as? SessionError)?.detail ?? "\(error)")")
        }
    }

    /// The stream's request passed the checks: the exchange goes on.
    func requestAccepted() {
        let handler = self.handler
        channel.eventLoop.execute { handler.value.requestAccepted() }
    }

    /// Nil while the client kept quiet since it authenticated and the connection is open.
    var interruption: SessionError? {
        get async {
            let handler = self.handler
            // A request's task runs on its channel's loop: read it there without a hop.
            if channel.eventLoop.inEventLoop { return handler.value.interruption }
            do {
                return try await channel.eventLoop.submit { handler.value.interruption }.get()
            } catch {
                return SessionError(code: .ioFailed, detail: "\(error)")
            }
        }
    }

    /// Writes and waits until the bytes are handed to the kernel, by `limit` at the latest.
    func write(_ bytes: [UInt8], until limit: ContinuousClock.Instant) async throws(SessionError) {
        let guardian = StepGuard(channel: channel, limit: limit)
        defer { guardian.cancel() }
        do {
            try await channel.writeAndFlush(ByteBuffer(bytes: bytes)).get()
        } catch {
            throw guardian.failure("write: \(error)")
        }
    }

    func close() {
        channel.close(promise: nil)
    }
}

/// Closes the channel when a step's time is up, and tells a timeout apart from other failures.
private final class StepGuard: Sendable {
    private let fired = NIOLockedValueBox(false)
    private let task: Scheduled<Void>?

    init(channel: any Channel, limit: ContinuousClock.Instant) {
        let remaining = limit - .now
        guard remaining > .zero else {
            fired.withLockedValue { $0 = true }
            channel.close(promise: nil)
            task = nil
            return
        }
        let fired = self.fired
        task = channel.eventLoop.scheduleTask(in: TimeAmount(remaining)) {
            fired.withLockedValue { $0 = true }
            channel.close(promise: nil)
        }
    }

    func cancel() { task?.cancel() }

    func failure(_ detail: String) -> SessionError {
        fired.withLockedValue { $0 } ? SessionError(code: .timedOut, detail: "out of time") : SessionError(code: .closed, detail: detail)
    }
}
