// Spark Streaming's socket word count for bench/compare.sh, in Java against the jars that the
// pyspark package ships. The job is the seed program as a Spark user writes it:
// socketTextStream -> flatMap(split ' ') -> mapToPair((w, 1)) -> reduceByKey(+); with --files,
// the same over textFileStream(DIR), the lines of the files moved into DIR (workload 5). Its output
// collects each batch's counts to the driver (as ember's foreach_rdd gathers them), so that
// both systems total the words they counted, and a StreamingListener prints one line per
// completed batch:
//
//   BATCH time_ms=T keys=K words=W records=N proc_ms=P sched_ms=S total_ms=D
//
// records is the lines the receiver stored for the batch (0 for --files, which has no receiver);
// proc, sched and total are Spark's processing, scheduling and total delay of the batch.
//
// Usage: SocketWordCount HOST PORT BATCHES INTERVAL_MS [MASTER]   (MASTER defaults to local[2];
// spark.* system properties given to the JVM override the defaults set here)
//        SocketWordCount --files DIR BATCHES INTERVAL_MS [MASTER]   (new files of DIR)
//        SocketWordCount --java-options   (prints the JVM options spark-submit would add on
//                                          this Java: the --add-opens list of this Spark)

import java.util.Arrays;
import java.util.List;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.spark.SparkConf;
import org.apache.spark.streaming.Durations;
import org.apache.spark.streaming.api.java.JavaDStream;
import org.apache.spark.streaming.api.java.JavaPairDStream;
import org.apache.spark.streaming.api.java.JavaStreamingContext;
import org.apache.spark.streaming.scheduler.BatchInfo;
import org.apache.spark.streaming.scheduler.StreamingListener;
import org.apache.spark.streaming.scheduler.StreamingListenerBatchCompleted;
import org.apache.spark.streaming.scheduler.StreamingListenerReceiverError;
import org.apache.spark.streaming.scheduler.StreamingListenerReceiverStopped;

import scala.Tuple2;

public final class SocketWordCount {
    /** Keys and words of each batch's output, by batch time, until the listener prints them. */
    private static final ConcurrentHashMap<Long, long[]> COUNTED = new ConcurrentHashMap<>();
    private static final AtomicLong COMPLETED = new AtomicLong();

    private SocketWordCount() {}

    /** A delay from BatchInfo (a Scala Option of a boxed long), or -1 when it is not known. */
    private static long millis(scala.Option<Object> delay) {
        return delay.isDefined() ? ((Number) delay.get()).longValue() : -1L;
    }

    public static void main(String[] args) throws Exception {
        if (args.length == 1 && args[0].equals("--java-options")) {
            System.out.println(org.apache.spark.launcher.JavaModuleOptions.defaultModuleOptions());
            return;
        }
        if (args.length < 4) {
            System.err.println("usage: SocketWordCount HOST PORT BATCHES INTERVAL_MS [MASTER]\n"
                + "       SocketWordCount --files DIR BATCHES INTERVAL_MS [MASTER]");
            System.exit(2);
        }
        boolean files = args[0].equals("--files");
        String host = args[0];
        String dir = args[1];
        if (files && !new java.io.File(dir).isDirectory()) {
            System.err.println("SocketWordCount: " + dir + " is not a directory");
            System.exit(2);
        }
        int port = files ? 0 : Integer.parseInt(args[1]);
        long batches = Long.parseLong(args[2]);
        long intervalMs = Long.parseLong(args[3]);
        String master = args.length > 4 ? args[4] : "local[2]";

        SparkConf conf = new SparkConf()
            .setAppName("SocketWordCount")
            .setIfMissing("spark.master", master)
            .setIfMissing("spark.ui.enabled", "false")
            .setIfMissing("spark.driver.host", "127.0.0.1")
            .setIfMissing("spark.driver.bindAddress", "127.0.0.1");
        JavaStreamingContext ssc = new JavaStreamingContext(conf, Durations.milliseconds(intervalMs));
        ssc.sparkContext().setLogLevel("WARN");

        JavaDStream<String> lines = files ? ssc.textFileStream(dir) : ssc.socketTextStream(host, port);
        JavaPairDStream<String, Integer> counts = lines
            .flatMap(line -> Arrays.asList(line.split(" ")).iterator())
            .mapToPair(word -> new Tuple2<>(word, 1))
            .reduceByKey(Integer::sum);
        counts.foreachRDD((rdd, time) -> {
            List<Tuple2<String, Integer>> all = rdd.collect();
            long words = 0;
            for (Tuple2<String, Integer> pair : all) {
                words += pair._2();
            }
            COUNTED.put(time.milliseconds(), new long[] {all.size(), words});
        });

        ssc.addStreamingListener(new StreamingListener() {
            @Override
            public void onBatchCompleted(StreamingListenerBatchCompleted completed) {
                BatchInfo info = completed.batchInfo();
                long time = info.batchTime().milliseconds();
                long[] counted = COUNTED.remove(time);
                System.out.println("BATCH time_ms=" + time
                    + " keys=" + (counted == null ? -1 : counted[0])
                    + " words=" + (counted == null ? -1 : counted[1])
                    + " records=" + info.numRecords()
                    + " proc_ms=" + millis(info.processingDelay())
                    + " sched_ms=" + millis(info.schedulingDelay())
                    + " total_ms=" + millis(info.totalDelay()));
                System.out.flush();
                COMPLETED.incrementAndGet();
            }

            @Override
            public void onReceiverError(StreamingListenerReceiverError error) {
                System.err.println("RECEIVER error: " + error.receiverInfo().lastErrorMessage());
            }

            @Override
            public void onReceiverStopped(StreamingListenerReceiverStopped stopped) {
                System.err.println("RECEIVER stopped: " + stopped.receiverInfo().lastErrorMessage());
            }
        });

        ssc.start();
        while (COMPLETED.get() < batches) {
            if (ssc.awaitTerminationOrTimeout(20)) {
                break;
            }
        }
        ssc.stop(true, false);
        System.exit(0);
    }
}
