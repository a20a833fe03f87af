import DropReporting
import FenceWire
import Logging

/// Why the front end dropped a packet or a connection without serving it.
public enum DropReason: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case wrongLength = "wrong-length"
    case unknownHashType = "unknown-hash-type"
    case domainNotTerminated = "domain-not-terminated"
    case domainNotZeroPadded = "domain-not-zero-padded"
    case domainNotUTF8 = "domain-not-utf8"
    case domainControlCharacter = "domain-control-character"
    /// A stream request naming a call-back address, port or family (a multicast packet replayed onto a stream).
    case notAStreamRequest = "not-a-stream-request"
    case hashTooWeak = "hash-too-weak"
    case noKey = "no-key"
    case digestMismatch = "digest-mismatch"
    case badFamily = "bad-family"
    case unusableAddress = "unusable-address"
    case wrongInterface = "wrong-interface"
    /// An exact repeat of a signed packet accepted before: a replay.
    case replay
    /// A copy of a request already under way or answered (every client sends several).
    case duplicate
    case retryLimited = "retry-limited"
    case expired
    /// Another request named the same call-back endpoint.
    case conflict
    case sourceQuota = "source-quota"
    case historyFull = "history-full"
    case callbacksBusy = "callbacks-busy"
    case callbackFailed = "callback-failed"
    case authenticationFailed = "authentication-failed"
    /// The client's challenge was one a daemon issued.
    case reflectedChallenge = "reflected-challenge"
    /// The peer sent more than the exchange allows.
    case excessData = "excess-data"
    case incompleteRequest = "incomplete-request"
    /// The client authenticated, then closed before its request could run: nothing was done.
    case clientGone = "client-gone"
    case tooManyConnections = "too-many-connections"

    public var description: String { rawValue }

    init(_ code: MalformedRequest.Code) {
        self = switch code {
        case .wrongLength: .wrongLength
        case .unknownHashType: .unknownHashType
        case .domainNotTerminated: .domainNotTerminated
        case .domainNotZeroPadded: .domainNotZeroPadded
        case .domainNotUTF8: .domainNotUTF8
        case .domainControlCharacter: .domainControlCharacter
        }
    }

    init(_ code: VerificationFailure.Code) {
        self = switch code {
        case .hashTooWeak: .hashTooWeak
        case .noKey: .noKey
        case .digestMismatch: .digestMismatch
        }
    }

    init(_ refusal: Conversation.Refusal) {
        self = switch refusal {
        case .reflectedChallenge: .reflectedChallenge
        case .wrongResponse: .authenticationFailed
        case .excessData: .excessData
        }
    }

    /// Copies of requests under way are the normal case, not worth a warning.
    var isExpected: Bool { self == .duplicate }
}

extension DropLog where Reason == DropReason {
    /// The front end's log of dropped packets.
    public static func packets(logger: Logger) -> DropLog<DropReason> {
        DropLog(event: "dropped packet", summary: "dropped packets in the last interval", logger: logger)
    }

    /// Counts a dropped packet; copies of requests under way only go to the debug log.
    func note(_ reason: DropReason, detail: String, source: String, listener: String, total: Int) {
        let metadata: Logger.Metadata = ["detail": "\(detail)", "listener": "\(listener)", "dropped-total": "\(total)"]
        guard !reason.isExpected else {
            logger.debug("dropped packet", metadata: metadata.merging(["reason": "\(reason)", "source": "\(source)"]) { $1 })
            return
        }
        note(reason, source: source, metadata: metadata)
    }
}
