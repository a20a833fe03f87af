@testable import FenceBus
@testable import FenceRouter
import Testing

/// Only the result of the command, from the host it went to, answers a command; every other
/// checked message under its correlation id leaves it waiting.
@Suite("Command answers")
struct CommandAnswerTests {
    let command = FenceCommand(id: "router-1-x-7", host: "hv1", action: .off, target: "vm1", deadline: 0, issuer: "router-1")

    func envelope(from sender: String, _ message: BusMessage) -> BusEnvelope {
        BusEnvelope(id: "\(sender)-x-1", sentAt: 0, sender: sender, message: message)
    }

    func result(id: String = "router-1-x-7", host: String = "hv1") -> BusMessage {
        .result(CommandResult(commandID: id, host: host, outcome: .off, observed: nil))
    }

    @Test("the host's result for the command answers it")
    func answer() throws {
        let answer = try #require(CommandAnswer.result(of: envelope(from: "hv1", result()), answering: command))
        #expect(answer.commandID == command.id && answer.host == "hv1" && answer.outcome == .off)
    }

    @Test("another host's result, a result naming another host, a result for another command, another kind of message: none answers")
    func notTheAnswer() {
        let others: [BusEnvelope] = [
            envelope(from: "hv2", result()),
            envelope(from: "hv2", result(host: "hv2")),
            envelope(from: "hv1", result(host: "hv2")),
            envelope(from: "hv1", result(id: "router-1-x-8")),
            envelope(from: "hv1", .heartbeat(Heartbeat(host: "hv1", epoch: 1, sequence: 1, libvirtConnected: true, domainCount: 0))),
        ]
        for other in others {
            #expect(CommandAnswer.result(of: other, answering: command) == nil, "\(other)")
        }
    }
}
