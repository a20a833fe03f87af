import DaemonSupport
import Testing

@Suite("fence_virtd-style command line")
struct DaemonOptionsTests {
    @Test("every option, separate and bundled, as getopt reads them")
    func options() throws {
        var expected = DaemonOptions()
        expected.foreground = true
        expected.configFile = "/tmp/x.conf"
        expected.debugLevel = 2
        expected.pidFile = "/run/f.pid"
        expected.waitForBackend = true
        #expect(try DaemonOptions(parsing: ["-F", "-f", "/tmp/x.conf", "-d", "2", "-p", "/run/f.pid", "-w"]) == expected)
        #expect(try DaemonOptions(parsing: ["-Fwd2", "-f/tmp/x.conf", "-p", "/run/f.pid"]) == expected)
        #expect(try DaemonOptions(parsing: []) == DaemonOptions())
        #expect(try DaemonOptions(parsing: ["-h"]).showHelp)
        #expect(try DaemonOptions(parsing: ["--version"]).showVersion)
        #expect(try DaemonOptions(parsing: ["-F", "--version"]).showVersion)
    }

    @Test("mistakes are named", arguments: [
        (["-x"], "unknown option -x"),
        (["-f"], "-f needs a value"),
        (["-d", "lots"], "-d needs a number, not \"lots\""),
        (["-F", "extra"], "unexpected argument \"extra\""),
        (["--verbose"], "unknown option --"),
    ])
    func mistakes(arguments: [String], message: String) {
        #expect(throws: DaemonOptions.UsageError(description: message)) { try DaemonOptions(parsing: arguments) }
    }
}
