import NIOConcurrencyHelpers
import NIOCore

/// Why a conversation with a client ended early.
struct SessionError: Error, CustomStringConvertible {
    enum Code: String {
        case timedOut = "timed-out"
        case closed = "closed-by-peer"
        case ioFailed = "io-failed"
    }

    let code: Code
    let detail: String

    var description: String { "\(code.rawValue): \(detail)" }
}

/// Collects a connection's bytes and hands them out in the exact amounts the conversation asks
/// for. One per connection, added when the channel is made; used only on its event loop.
final class ConversationHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private var received = ByteBuffer()
    private var waiting: (count: Int, promise: EventLoopPromise<[UInt8]>)?
    private var ended = false

    init() {}

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        received.writeBuffer(&bytes)
        deliver()
    }

    func channelInactive(context: ChannelHandlerContext) {
        ended = true
        deliver()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    /// Completes `promise` with the next `count` bytes, or fails it if the connection ends first.
    func read(_ count: Int, promise: EventLoopPromise<[UInt8]>) {
        precondition(waiting == nil, "one read at a time")
        waiting = (count, promise)
        deliver()
    }

    private func deliver() {
        guard let (count, promise) = waiting else { return }
        if received.readableBytes >= count {
            waiting = nil
            promise.succeed(received.readBytes(length: count)!)
        } else if ended {
            waiting = nil
            promise.fail(SessionError(code: .closed, detail: "connection closed after \(received.readableBytes) of \(count) bytes"))
        }
    }
}

/// The byte stream to one fence_xvm client, whether we called it back or it connected to us.
/// Every read and write has its own step limit inside the request's deadline; when either passes,
/// the channel is closed and the step fails with `.timedOut`.
struct StreamSession {
    let channel: any Channel
    private let handler: NIOLoopBound<ConversationHandler>
    /// No step may run past this; a stream request moves it once the request's own deadline is known.
    var deadline: ContinuousClock.Instant

    private init(channel: any Channel, handler: NIOLoopBound<ConversationHandler>, deadline: ContinuousClock.Instant) {
        self.channel = channel
        self.handler = handler
        self.deadline = deadline
    }

    /// A session on `channel`, which must carry a `ConversationHandler` (see `prepare`).
    static func open(_ channel: any Channel, deadline: ContinuousClock.Instant) async throws -> StreamSession {
        let eventLoop = channel.eventLoop
        let find: @Sendable () throws -> NIOLoopBound<ConversationHandler> = {
            NIOLoopBound(try channel.pipeline.syncOperations.handler(type: ConversationHandler.self), eventLoop: eventLoop)
        }
        let handler = eventLoop.inEventLoop ? try find() : try await eventLoop.submit(find).get()
        return StreamSession(channel: channel, handler: handler, deadline: deadline)
    }

    /// Adds the handler a session needs; for channel initialisers (on the channel's event loop).
    static func prepare(_ channel: any Channel) throws {
        try channel.pipeline.syncOperations.addHandler(ConversationHandler())
    }

    /// Reads exactly `count` bytes.
    func read(_ count: Int, step: Duration) async throws(SessionError) -> [UInt8] {
        let guardian = StepGuard(channel: channel, limit: min(deadline, .now + step))
        defer { guardian.cancel() }
        let promise = channel.eventLoop.makePromise(of: [UInt8].self)
        let handler = self.handler
        channel.eventLoop.execute { handler.value.read(count, promise: promise) }
        do {
            return try await promise.futureResult.get()
        } catch {
            throw guardian.failure("read: \((error as? SessionError)?.detail ?? "\(error)")")
        }
    }

    /// Writes and waits until the bytes are handed to the kernel.
    func write(_ bytes: [UInt8], step: Duration) async throws(SessionError) {
        let guardian = StepGuard(channel: channel, limit: min(deadline, .now + step))
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
        fired.withLockedValue { $0 } ? SessionError(code: .timedOut, detail: detail) : SessionError(code: .closed, detail: detail)
    }
}
