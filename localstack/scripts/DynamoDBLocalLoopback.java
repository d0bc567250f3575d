// DynamoDBLocalLoopback starts DynamoDB Local (DynamoDBLocal.jar on the
// classpath) the way its own main class does, but with its Jetty connector
// bound to 127.0.0.1 instead of every interface (DynamoDB Local has no
// bind-address option), and on the port the OS picks when -port is 0. Once it
// listens it prints one line, "LULL_LISTENING 127.0.0.1:PORT", which
// emulators.sh waits for. Telemetry setup (ServerRunner.main's) is skipped;
// pass -disableTelemetry too. When LULL_EMULATORS_WATCH_PID names a process,
// the server exits once that process is gone, so a killed test runner leaves
// no orphan behind.
//
// Build: javac -cp DynamoDBLocal.jar -d OUT DynamoDBLocalLoopback.java
// Run:   java -Djava.library.path=DIR/DynamoDBLocal_lib -cp OUT:DIR/DynamoDBLocal.jar \
//          DynamoDBLocalLoopback -inMemory -disableTelemetry -port 0
import com.amazonaws.services.dynamodbv2.local.main.ServerRunner;
import com.amazonaws.services.dynamodbv2.local.server.DynamoDBProxyServer;
import java.lang.reflect.Field;
import org.eclipse.jetty.server.Connector;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;

public final class DynamoDBLocalLoopback {
  public static void main(String[] args) throws Exception {
    String host = System.getProperty("lull.bind", "127.0.0.1");
    boolean anyPort = false;
    for (int i = 0; i + 1 < args.length; i++) {
      if (args[i].equals("-port") && args[i + 1].equals("0")) {
        anyPort = true;
        args[i + 1] = "8000"; // placeholder for the argument check; replaced below
      }
    }
    DynamoDBProxyServer proxy = ServerRunner.createServerFromCommandLineArgs(args);
    Field f = DynamoDBProxyServer.class.getDeclaredField("server");
    f.setAccessible(true);
    Server server = (Server) f.get(proxy);
    ServerConnector connector = null;
    for (Connector c : server.getConnectors()) {
      if (c instanceof ServerConnector sc) {
        sc.setHost(host);
        if (anyPort) sc.setPort(0);
        connector = sc;
      }
    }
    if (connector == null) {
      System.err.println("DynamoDBLocalLoopback: no Jetty ServerConnector found; DynamoDB Local changed");
      System.exit(2);
    }
    String watch = System.getenv("LULL_EMULATORS_WATCH_PID");
    if (watch != null && !watch.isEmpty()) {
      long pid = Long.parseLong(watch);
      Thread t = new Thread(() -> {
        while (true) {
          try { Thread.sleep(2000); } catch (InterruptedException e) { return; }
          if (!ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false)) {
            System.err.println("DynamoDBLocalLoopback: process " + pid + " is gone; exiting");
            System.exit(0);
          }
        }
      }, "lull-parent-watch");
      t.setDaemon(true);
      t.start();
    }
    // No graceful Jetty stop on SIGTERM: with -inMemory there is nothing to
    // keep, and the JVM exits sooner without it.
    proxy.start();
    System.out.println("LULL_LISTENING " + host + ":" + connector.getLocalPort());
    System.out.flush();
    proxy.join();
  }
}
