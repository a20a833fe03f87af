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

/// The byte stream to one fence_xvm client, whether we called it back or it connected to us. Every
/// read and write has its own step limit inside the request's deadline; when either passes, the
/// channel is closed and the step fails with `.timedOut`.
struct StreamSession {
    let channel: any Channel
    private var inbound: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    private var pending = ByteBuffer()
    /// No step may run past this; a stream request moves it once the request's own deadline is known.
    var deadline: ContinuousClock.Instant

    init(channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>, inbound: NIOAsyncChannelInboundStream<ByteBuffer>, deadline: ContinuousClock.Instant) {
        self.channel = channel.channel
        self.inbound = inbound.makeAsyncIterator()
        self.deadline = deadline
    }

    /// Reads exactly `count` bytes.
    mutating func read(_ count: Int, step: Duration) async throws(SessionError) -> [UInt8] {
        let guardian = StepGuard(channel: channel, limit: min(deadline, .now + step))
        defer { guardian.cancel() }
        while pending.readableBytes < count {
            let next: ByteBuffer?
            do {
                next = try await inbound.next()
            } catch {
                throw guardian.failure("read: \(error)")
            }
            guard var next else { throw guardian.failure("connection closed after \(pending.readableBytes) of \(count) bytes") }
            pending.writeBuffer(&next)
        }
        return pending.readBytes(length: count)!
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
        task = channel.eventLoop.scheduleTask(in: .nanoseconds(remaining.nanoseconds)) {
            fired.withLockedValue { $0 = true }
            channel.close(promise: nil)
        }
    }

    func cancel() { task?.cancel() }

    func failure(_ detail: String) -> SessionError {
        fired.withLockedValue { $0 } ? SessionError(code: .timedOut, detail: detail) : SessionError(code: .closed, detail: detail)
    }
}

extension Duration {
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }

    /// Milliseconds with one decimal, for logs.
    var millisecondsText: String {
        let tenths = (nanoseconds + 50_000) / 100_000
        return "\(tenths / 10).\(tenths % 10)"
    }
}
